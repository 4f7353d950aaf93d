"""The plugin author's toolkit: the pieces every built-in component is made of, public so a
third-party plugin is written the same way (and measured the same way) as the built-ins.

* ``benchmark.kit.registration``: ``register_specs_of(modules)``, the one registration idiom.
* ``benchmark.kit.training``: the seeded mini-batch loop and the shared training parameters.
* ``benchmark.kit.batching``: explainers' chunked model calls (``in_chunks``,
  ``attribute_in_chunks`` for captum methods, ``target_logits``).
* ``benchmark.kit.evaluation``: eval mode with restore, batched logits, target resolution.
* ``benchmark.kit.ranking``: pixel ranking with its tie rule, normalised AUC.
* ``benchmark.kit.figures``: curve figures drawn from stored arrays.
* ``benchmark.kit.seeding``: seeded blocks that leave the global random state alone, per-image
  seeds, named streams.
* ``benchmark.kit.attacks``, ``benchmark.kit.apgd``, ``benchmark.kit.square``: batched,
  batch-independent attacks (FGSM, PGD, APGD-CE / DLR, the Square Attack) under Linf and L2,
  for adversarial training and robustness evaluation.
* ``benchmark.kit.devices``: where a module lives, numbers back on the CPU, CPU-seeded
  re-initialisation.
"""
