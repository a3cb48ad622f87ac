"""The CPU half of the CUDA-vs-CPU augmentation check (tests/gpu/test_gpu.py): its harness is exact on CPU.

Runs everywhere: with the images on the CPU, an op given a :class:`CpuDrawnGenerator` must return exactly
what it returns with a real generator of the same seed. If an op drew through anything but ``torch.rand``/
``torch.randint`` this fails (or raises), and the GPU comparison would no longer compare like with like.
"""

from __future__ import annotations

import pytest
import torch

from tests.gpu.cross_device import CpuDrawnGenerator, cpu_drawn, every_op


@pytest.mark.parametrize("op", every_op(), ids=lambda op: type(op).__name__)
def test_cpu_drawn_generator_reproduces_a_real_generator(op):
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    want = op(x.clone(), torch.Generator().manual_seed(7))
    with cpu_drawn():
        got = op(x.clone(), CpuDrawnGenerator(7, "cpu"))
    assert torch.equal(got, want)
    assert not torch.equal(want, x)  # the op did something
