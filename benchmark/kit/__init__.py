"""The plugin author's toolkit: the pieces every built-in component is made of, public so a
third-party plugin is written the same way (and measured the same way) as the built-ins.

* ``benchmark.kit.training``: the seeded mini-batch loop and the shared training parameters.
"""
