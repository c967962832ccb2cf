"""Run configurations, below every other layer: it imports no other streamlabel package but
``keys``.

- ``errors``: :class:`ConfigError` and :class:`ConfigKeyError`;
- ``schema``: every key with its default, range or choices, and whether it counts for resume;
- ``loading``: ``load_config`` (YAML files, ``_base_``, ``key=value`` overrides, ``imports``);
- ``checks``: the schema and cross-key checks; policy and loss-term checks come from the caller
  (:class:`~streamlabel.config.checks.PluginChecks`, built by ``streamlabel.launch.run_config``);
- ``fingerprint``: ``config_fingerprint`` (what a checkpoint must match to resume) and
  ``dump_config``.
"""
