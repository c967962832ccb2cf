"""The configuration of a run: ``load_config`` with the policy and loss-term checks of the
registries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from streamlabel.config.checks import PluginChecks
from streamlabel.config.loading import load_config

__all__ = ["load_run_config", "plugin_checks"]


def plugin_checks() -> PluginChecks:
    """The policy, loss-term and model facts ``load_config`` checks a config against (imports the
    registries)."""
    from streamlabel.losses import available_losses, loss_parameters
    from streamlabel.methods import available_policies, policy_parameters
    from streamlabel.methods.param_check import dry_run_error, parameter_type_error
    from streamlabel.models import model_error

    return PluginChecks(
        policy_names=available_policies,
        policy_parameters=policy_parameters,
        policy_value_error=parameter_type_error,
        policy_error=dry_run_error,
        loss_names=available_losses,
        loss_parameters=loss_parameters,
        model_error=model_error,
    )


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """The resolved, checked configuration of ``path`` (None: the defaults) with ``overrides``
    applied."""
    return load_config(path, overrides, checks=plugin_checks())
