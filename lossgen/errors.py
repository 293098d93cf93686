"""Typed errors: every failure a user can cause names what to fix in one line."""

from __future__ import annotations


class LossgenError(Exception):
    """Base class of every error lossgen raises on purpose."""


class SpecError(LossgenError, ValueError):
    """A loss specification (expression, names, domains, spec file) is malformed."""


class CodegenError(LossgenError):
    """An expression cannot be turned into kernel code (for example an unsupported function)."""


class InputError(LossgenError, ValueError):
    """Arrays or parameters passed to a compiled kernel do not fit it (shape, dtype, name)."""


class VerificationError(LossgenError, AssertionError):
    """A generated kernel disagrees with its reference beyond tolerance."""
