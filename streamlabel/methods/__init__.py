"""Bank update policies (pseudo-label methods) and their registry."""

from streamlabel.methods.base import (
    BankUpdatePolicy,
    available_policies,
    build_policy,
    policy_parameters,
    register_policy,
)
from streamlabel.methods.dcml import DCMLPolicy
from streamlabel.methods.hcd import HCDPolicy
from streamlabel.methods.inclr import INCLRPolicy
from streamlabel.methods.lbg import LbGPolicy
from streamlabel.methods.nplp import NPLPPolicy
from streamlabel.methods.spcl import SpCLPolicy

__all__ = [
    "BankUpdatePolicy",
    "DCMLPolicy",
    "HCDPolicy",
    "INCLRPolicy",
    "LbGPolicy",
    "NPLPPolicy",
    "SpCLPolicy",
    "available_policies",
    "build_policy",
    "policy_parameters",
    "register_policy",
]
