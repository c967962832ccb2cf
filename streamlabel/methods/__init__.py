"""Bank update policies (pseudo-label methods) and their registry."""

from streamlabel.methods.base import (
    BankUpdatePolicy,
    available_policies,
    build_policy,
    policy_parameters,
    register_policy,
)
from streamlabel.methods.hcd import HCDPolicy

__all__ = [
    "BankUpdatePolicy",
    "HCDPolicy",
    "available_policies",
    "build_policy",
    "policy_parameters",
    "register_policy",
]
