"""Provenance: every field that decides bit-identity is recorded, the fingerprint is stable and
covers exactly those fields, and each stored job names the machine that computed it."""

import platform
import re

import numpy as np
import pandas as pd
import torch

from benchmark import provenance
from benchmark.records import ComponentRecord, Job, Outcome
from benchmark.runner import cpu_model, machine_info
from benchmark.store import Store


def test_host_records_cpu_instruction_sets_and_the_numeric_builds():
    host = provenance.host()
    assert set(provenance.IDENTITY_KEYS) | {"fingerprint"} == set(host)
    assert host["cpu"] and host["cpu"] == cpu_model() == provenance.cpu_model()
    assert set(host["cpu_flags"]) <= set(provenance.NUMERIC_FLAGS)
    if platform.machine() == "x86_64":  # every x86-64 CPU torch supports has SSE4.2
        assert "sse4_2" in host["cpu_flags"] and host["cpu_vendor"]
    assert host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    build = host["torch_build"]
    assert build["version"] == torch.__version__ and build["commit"] == torch.version.git_version
    assert (
        build["blas"] in {"mkl", "open", "openblas", "accelerate", "blis", "generic"}
        or (build["blas"])
    )
    if torch.backends.mkldnn.is_available():
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", build["onednn"])
    assert (build["cuda"] or None) == torch.version.cuda
    assert host["numpy_build"]["version"] == np.__version__
    assert host["gpus"] == ([] if not torch.cuda.is_available() else host["gpus"])


def test_the_fingerprint_is_stable_and_covers_exactly_the_identity_fields(monkeypatch):
    first, second = provenance.host(), provenance.host()
    assert first == second and re.fullmatch(r"[0-9a-f]{12}", first["fingerprint"])
    assert (
        provenance.fingerprint({**first, "node": "elsewhere", "cores": 64})
        == (first["fingerprint"])
    )  # the host name and the core count do not change a number
    other_cpu = {**first, "cpu_flags": [f for f in first["cpu_flags"] if f != "avx512f"] + ["x"]}
    assert provenance.fingerprint(other_cpu) != first["fingerprint"]
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")  # forces MKL's compatible code path
    changed = provenance.host()
    assert changed["numerics_env"] == {"MKL_CBWR": "COMPATIBLE"}
    assert changed["fingerprint"] != first["fingerprint"]


def test_machine_info_carries_the_provenance_and_its_fingerprint():
    info = machine_info()
    assert info["fingerprint"] == provenance.host()["fingerprint"]
    assert info["cpu_flags"] == provenance.cpu_flags() and info["torch_build"]["blas"]
    assert provenance.identity(info) == provenance.host()


def _job():
    def rec(kind, name):
        return ComponentRecord(kind, name, "1", {}, name)

    return Job(
        rec("dataset", "d"), rec("model", "m"), rec("debiaser", "b"), rec("evaluator", "e"), 0
    )


def test_each_job_names_the_machine_that_computed_it(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    info = machine_info()
    run = store.start_run("s", "1", "src", "h", {}, info)
    here, there = _job(), Job(**{**_job().__dict__, "seed": 1})
    store.record(run, here, Outcome(here.key, "ok", {"m": 1.0}, worker=f"{platform.node()}:7"))
    store.record(run, there, Outcome(there.key, "ok", {"m": 1.0}, worker="ray-node-3:9"))
    machines = store.jobs().set_index("seed")["machine"]
    assert machines[0] == info["fingerprint"]  # a worker on the coordinator's host
    assert pd.isna(machines[1])  # a worker elsewhere: not known to the coordinator
    assert store.machines() == {info["fingerprint"]: provenance.identity(info)}
    assert "machine" in store.results().columns
    failed = _job()
    store.record(
        run, failed, Outcome(failed.key, "failed", error="x", worker=f"{platform.node()}:7")
    )
    assert store.attempts()["machine"].tolist() == [info["fingerprint"]]
