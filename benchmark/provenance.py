"""What decides whether a number reproduces bit for bit: the machine and the numeric stack.

Two fresh runs on one host give bit-identical numbers (``tests/test_runner.py``); on another
host they need not, and usually do not. Float results at the last bits depend on:

* the **CPU**: its model and vendor (MKL takes other code paths on AMD than on Intel) and the
  instruction sets the kernels dispatch on (AVX2 vs AVX-512 changes the order of a reduction;
  FMA fuses a multiply and an add into one rounding; AMX and AVX512-BF16 change matmul paths);
  torch states the level it dispatches to as ``torch.backends.cpu.get_cpu_capability()``;
* the **torch build**: its version and commit, its BLAS (MKL or OpenBLAS) and oneDNN (MKLDNN)
  versions, CUDA and cuDNN for GPU runs; NumPy's version and BLAS;
* the C library (libm), and environment variables that override the dispatch or the rounding
  mode (``MKL_CBWR``, ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ...);
* per job, the **device** and the **thread count** (a reduction split over two threads adds
  in another order): those are stored with each job, not here.

``host()`` collects the first three; ``fingerprint()`` hashes exactly the fields that decide
bit-identity (not the host name, the core count or the kernel version), so two machines of the
same kind share a fingerprint and a job's conditions are ``(fingerprint, device, threads)``.
Written by hand: no library reports this set (``torch.utils.collect_env`` prints a text report
for bug reports, without instruction sets, and is slow). ``tests/test_provenance.py`` checks
that every field is present and that the fingerprint is stable.

``compare_conditions`` sets a rerun's recorded conditions against the published ones, field
by field (``bench reproduce``, ``benchmark.reproduce``): it lives here, next to the fields it
compares, so that a new field of ``host()`` and its comparison change together.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmark.records import digest

if TYPE_CHECKING:
    from benchmark.render.site_data import Document, SeedJob

NUMERIC_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    # aarch64 (the ``Features`` line)
    "asimd",
    "asimddp",
    "asimdhp",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)
"""CPU features that change which float kernels run (and so the last bits of a result)."""

NUMERIC_ENV = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "OPENBLAS_CORETYPE",
    "NPY_DISABLE_CPU_FEATURES",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
)
"""Environment variables that override kernel dispatch or rounding (recorded when set)."""

IDENTITY_KEYS = (
    "arch",
    "cpu",
    "cpu_vendor",
    "cpu_flags",
    "cpu_capability",
    "libc",
    "python",
    "torch_build",
    "numpy_build",
    "gpus",
    "numerics_env",
)
"""The fields of ``host()`` that ``fingerprint`` hashes."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name: numbers at the last bit differ between CPU models."""
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "CPU part"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine()


def cpu_vendor() -> str:
    info = _cpuinfo()
    return info.get("vendor_id") or info.get("CPU implementer") or ""


def cpu_flags() -> list[str]:
    """The ``NUMERIC_FLAGS`` this CPU has, in that order (``[]`` where the OS does not say)."""
    info = _cpuinfo()
    have = set((info.get("flags") or info.get("Features") or "").split())
    return [flag for flag in NUMERIC_FLAGS if flag in have]


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found.group(1).strip() if found else ""


def torch_build() -> dict[str, str]:
    """torch's version, commit, BLAS, oneDNN, CUDA and cuDNN, from ``torch.__config__.show()``
    (the runtime cuDNN when a GPU is visible: the build's may differ from the loaded one)."""
    import torch

    shown = torch.__config__.show()
    settings = dict(re.findall(r"(\w+)=([^,\n]*)", _match(r"Build settings: (.*)", shown)))
    cudnn = settings.get("CUDNN_VERSION", "")
    if torch.cuda.is_available() and torch.backends.cudnn.is_available():
        cudnn = str(torch.backends.cudnn.version())
    return {
        "version": torch.__version__,
        "commit": torch.version.git_version or "",
        "blas": settings.get("BLAS_INFO", ""),
        "lapack": settings.get("LAPACK_INFO", ""),
        "mkl": _match(r"Math Kernel Library Version (\S+?)(?:-Product|\s)", shown),
        "onednn": _match(r"(?:MKL-DNN|oneDNN) v(\S+)", shown)
        if torch.backends.mkldnn.is_available()
        else "",
        "openmp": _match(r"OpenMP (\d+)", shown),
        "cuda": torch.version.cuda or "",
        "cudnn": cudnn,
    }


def numpy_build() -> dict[str, str]:
    """NumPy's version and the BLAS it was built against."""
    import numpy as np

    out = {"version": np.__version__, "blas": ""}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["blas"] = f"{blas.get('name', '')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError, ValueError):  # older NumPy prints instead
        pass
    return out


def gpus() -> list[str]:
    """``name (sm_XY)`` of every visible CUDA device (``[]`` without one)."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        out.append(f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})")
    return out


def host() -> dict[str, Any]:
    """This machine's numeric identity (``IDENTITY_KEYS``) and its ``fingerprint``."""
    import torch

    libc, libc_version = platform.libc_ver()
    info: dict[str, Any] = {
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cpu_vendor": cpu_vendor(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "libc": f"{libc} {libc_version}".strip(),
        "python": platform.python_version(),
        "torch_build": torch_build(),
        "numpy_build": numpy_build(),
        "gpus": gpus(),
        "numerics_env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ},
    }
    info["fingerprint"] = fingerprint(info)
    return info


def fingerprint(info: dict[str, Any]) -> str:
    """A 12-character hash of the ``IDENTITY_KEYS`` of ``info`` (a ``host()`` dict): equal
    fingerprints, same device and threads -> the same bits are expected."""
    return digest({key: info.get(key) for key in IDENTITY_KEYS})[:12]


def identity(info: dict[str, Any]) -> dict[str, Any]:
    """The fields of a recorded machine (``runs.machine``) that its fingerprint covers."""
    return {key: info[key] for key in (*IDENTITY_KEYS, "fingerprint") if key in info}


# -- a rerun's conditions against the published ones ---------------------------------------


@dataclass
class Condition:
    """One condition as published and as rerun: ``equal``, ``differ``, ``mixed`` (the
    published rows disagree among themselves) or ``not recorded``."""

    field: str
    published: list[str]
    rerun: list[str]
    verdict: str


def condition_fields(machine: dict[str, Any], versions: dict[str, str]) -> dict[str, str | None]:
    """The compared fields of one recorded machine (``None`` where it did not record one);
    torch and Python fall back on the run's versions (runs from before provenance)."""
    torch_build = machine.get("torch_build") or {}
    numpy_build = machine.get("numpy_build") or {}

    def joined(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
        if isinstance(value, list):
            return " ".join(value) or "none"
        return str(value)

    return {
        "cpu": joined(machine.get("cpu")),
        "cpu vendor": joined(machine.get("cpu_vendor")),
        "instruction sets": joined(machine.get("cpu_flags")),
        "torch cpu capability": joined(machine.get("cpu_capability")),
        # the release (runs record the distribution's, ``2.14.1``); the build (``+cu130``) next
        "torch": (torch_build.get("version") or versions.get("torch") or "").split("+")[0] or None,
        "torch build / BLAS / oneDNN": (
            f"{torch_build.get('version')} {torch_build.get('commit', '')[:10]} / "
            f"{torch_build.get('blas')} {torch_build.get('mkl')} / "
            f"{torch_build.get('onednn') or 'none'}"
            if torch_build
            else None
        ),
        "CUDA / cuDNN": (
            f"{torch_build.get('cuda') or 'none'} / {torch_build.get('cudnn') or 'none'}"
            if torch_build
            else None
        ),
        "numpy": (
            f"{numpy_build.get('version')} ({numpy_build.get('blas')})" if numpy_build else None
        ),
        "libc": joined(machine.get("libc")),
        "python": machine.get("python") or versions.get("python"),
        "GPUs": joined(machine.get("gpus")),
        "numerics environment": joined(machine.get("numerics_env")),
        "machine fingerprint": joined(machine.get("fingerprint")),
    }


def _condition(name: str, published: list[str | None], rerun: list[str | None]) -> Condition:
    shown = sorted({p if p is not None else "not recorded" for p in published})
    now = sorted({r if r is not None else "not recorded" for r in rerun})
    if shown == ["not recorded"]:
        verdict = "not recorded"
    elif len(shown) > 1:
        verdict = "mixed"
    else:
        verdict = "equal" if shown == now else "differ"
    return Condition(name, shown, now, verdict)


def compare_conditions(
    document: Document, wanted: list[SeedJob], store: Any, rerun: dict[str, dict[str, Any]]
) -> list[Condition]:
    """Published conditions of the rerun jobs (their machines where each job names one, else
    the machines of every run the document shows) against the rerun's own records."""
    runs = document.provenance.runs
    fingerprints = {j.machine for j in wanted}
    if None not in fingerprints and fingerprints <= set(document.provenance.machines):
        published = [(document.provenance.machines[f], {}) for f in sorted(fingerprints)]
    else:
        published = [(run.machine, run.versions) for run in runs]
    rerun_runs = store.runs().to_dict("records")
    current = [(json.loads(r["machine"]), json.loads(r["versions"])) for r in rerun_runs]
    before = [condition_fields(m, v) for m, v in published]
    after = [condition_fields(m, v) for m, v in current]
    out = [
        _condition(name, [b[name] for b in before], [a[name] for a in after]) for name in after[0]
    ]
    done = [rerun[j.job_key] for j in wanted if j.job_key in rerun]
    for name in ("threads", "device"):
        out.append(
            _condition(
                name,
                [None if getattr(j, name) is None else str(getattr(j, name)) for j in wanted],
                [None if d[name] is None else str(d[name]) for d in done],
            )
        )
    versions_then = {f"{k} {v}" for run in runs for k, v in run.versions.items()}
    versions_now = {f"{k} {v}" for _, versions in current for k, v in versions.items()}
    changed = sorted({item.rsplit(" ", 1)[0] for item in versions_then ^ versions_now})
    out.append(
        Condition(
            "library versions",
            sorted(versions_then - versions_now) or ["same"],
            sorted(versions_now - versions_then) or ["same"],
            "differ" if changed else "equal",
        )
    )
    return out
