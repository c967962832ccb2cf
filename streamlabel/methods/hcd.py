"""HCD: online pseudo labels by hierarchical cluster dynamics (Zheng et al., "Online Pseudo Label Generation
by Hierarchical Cluster Dynamics for Adaptive Person Re-ID", ICCV 2021).

A feature bank (momentum-updated rows) and an H-level label bank (level 0 finest, every cluster of level
h inside one cluster of level h+1) are updated every mini-batch. Two rule sets, ``dynamics``:

- ``tracking`` (default, methods/hcd_tracking.py): every level is a function of the current bank. Level 0
  links mutual ``link_k``-NN samples and splits each linked component at its density peaks by label
  propagation; each level above merges units that are each other's nearest eligible unit (cosine above a
  floor calibrated from the bank's own k-NN lists; from ``cross_camera_from`` on, sharing no camera).
  ``step`` re-decides exactly the parts the moved rows touch, so the online labels follow the features.
- ``paper`` (methods/hcd_paper.py): the paper's rules as written (nearest-neighbour label, LP split with
  density-peak anchors, LP merge with p_uv > sigma inside the merge border), for reproduction.

With ``refresh_every = n > 0`` the steps only update features and every n epochs ``refresh`` re-clusters
the current bank from scratch (the offline arm). docs/engine.md compares the presets on real data.
``refresh_source: extract`` fills the bank from a fresh feature pass before each refresh; online
(``refresh_every = 0``) it re-anchors the labels at every epoch end: the trainer reloads the bank
from a fresh pass of the current model and the labels start anew from it, so the momentum blend of
training-mode features of successive models never outlives an epoch.

Scale (docs/scaling.md, paper dynamics): ``bank: sharded`` splits the feature bank and every level's
cluster sums by rows over the ranks of torch.distributed; ``sums_dtype`` stores the sums in 16 bits;
``knn_projection: d`` finds k-NN candidates in d dimensions and re-scores them exactly.
"""

from __future__ import annotations

import time

import torch

from streamlabel.banks.feature_bank import FeatureBank
from streamlabel.banks.hybrid_memory import memory_entries_from_sums
from streamlabel.banks.label_bank import HierarchicalLabelBank
from streamlabel.banks.row_shards import RowShards, projection_matrix
from streamlabel.banks.sharded_feature_bank import ShardedFeatureBank
from streamlabel.methods.anchors import ANCHOR_METHODS
from streamlabel.methods.base import BankUpdatePolicy, register_policy
from streamlabel.methods.cluster_dynamics import MERGE_NORMS
from streamlabel.methods.hcd_paper import PaperDynamics
from streamlabel.methods.hcd_tracking import TrackingDynamics

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DYNAMICS = ("tracking", "paper")
# parameters only one rule set reads, with their defaults there (None in the signature = "preset default")
PRESET_DEFAULTS: dict[str, dict[str, object]] = {
    "tracking": {"link_k": 3, "merge": "edges", "edge_k": 10, "edge_share": 0.45, "camera_centring": True,
                 "criterion": "centroid", "split_gap": 2.0, "cross_camera_from": 2},
    "paper": {"link_k": 2, "criterion": "lp", "alpha_merge": 0.99, "sigma": 0.25, "merge_norm": "row",
              "init_rounds": 5, "refresh_rounds": 5, "assign": "nearest"},
}
NUM_LEVELS = {"tracking": 5, "paper": 3}  # default num_levels of each rule set
CRITERIA = {"tracking": ("centroid", "average_linkage"), "paper": ("lp", "average_linkage")}
MERGES = ("edges", "centroid")
_CENTROID_ONLY = ("criterion", "merge_floor", "cross_camera_from")  # tracking keys of merge: centroid
_EDGES_ONLY = ("edge_k", "edge_share")
_ONLY = {"tracking": ("split_gap", "merge_floor", "cross_camera_from", "merge", "edge_k", "edge_share",
                      "camera_centring"),
         "paper": ("alpha_merge", "sigma", "merge_norm", "init_rounds", "refresh_rounds", "assign")}


@register_policy("hcd")
class HCDPolicy(BankUpdatePolicy):
    """Hierarchical cluster dynamics over a feature bank and an H-level label bank."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        device: torch.device | str | None = None,
        refresh_every: int = 0,
        refresh_source: str = "bank",
        dynamics: str = "tracking",
        num_levels: int | None = None,
        k: int = 30,
        link_k: int | None = None,
        alpha_split: float = 0.99,
        max_anchors: int = 8,
        anchor_method: str = "density_peak",
        criterion: str | None = None,
        merge_only: bool = False,
        split_gap: float | None = None,
        merge: str | None = None,
        edge_k: int | None = None,
        edge_share: float | None = None,
        camera_centring: bool | None = None,
        merge_floor: float | None = None,
        cross_camera_from: int | None = None,
        alpha_merge: float | None = None,
        sigma: float | None = None,
        merge_norm: str | None = None,
        init_rounds: int | None = None,
        refresh_rounds: int | None = None,
        assign: str | None = None,
        momentum: float = 0.2,
        knn_backend: str = "torch",
        knn_slack: int = 8,
        bank_dtype: str = "float32",
        bank: str = "replicated",
        sums_dtype: str = "float32",
        knn_projection: int = 0,
        singletons_as_outliers: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, feat_dim, device=device, refresh_every=refresh_every)
        if num_levels is None:  # tracking merges up to 4 times (its rounds settle by then); the paper's 3 levels
            num_levels = NUM_LEVELS.get(dynamics, 3)
        if refresh_source not in ("bank", "extract"):
            raise ValueError(
                "refresh_source must be 'bank' (refresh from the momentum bank) or 'extract' "
                "(a fresh "
                f"pass first; online: at every epoch end), got {refresh_source!r}"
            )
        self.refresh_source = refresh_source
        given = {"link_k": link_k, "criterion": criterion, "split_gap": split_gap, "merge": merge, "edge_k": edge_k,
                 "edge_share": edge_share, "camera_centring": camera_centring, "merge_floor": merge_floor,
                 "cross_camera_from": cross_camera_from, "alpha_merge": alpha_merge, "sigma": sigma,
                 "merge_norm": merge_norm, "init_rounds": init_rounds, "refresh_rounds": refresh_rounds,
                 "assign": assign}
        preset = _validated_preset(
            dynamics,
            given,
            k=k,
            num_levels=num_levels,
            max_anchors=max_anchors,
            alpha_split=alpha_split,
            anchor_method=anchor_method,
            bank_dtype=bank_dtype,
            bank=bank,
            sums_dtype=sums_dtype,
            knn_projection=knn_projection,
            knn_backend=knn_backend,
            feat_dim=feat_dim,
        )
        self._set_parameters(
            dynamics,
            preset,
            k=k,
            num_levels=num_levels,
            alpha_split=alpha_split,
            max_anchors=max_anchors,
            anchor_method=anchor_method,
            merge_only=merge_only,
            singletons_as_outliers=singletons_as_outliers,
            bank=bank,
        )
        self.config = {
            "num_samples": num_samples, "feat_dim": feat_dim, "dynamics": dynamics, "num_levels": num_levels,
            "k": k, "alpha_split": alpha_split, "max_anchors": max_anchors, "anchor_method": anchor_method,
            "merge_only": merge_only, "momentum": momentum, "refresh_every": refresh_every,
            "refresh_source": refresh_source,
            "bank_dtype": bank_dtype, "knn_slack": knn_slack, "bank": bank, "sums_dtype": sums_dtype,
            "knn_projection": knn_projection, **preset,
        }
        self._build_banks(momentum, bank_dtype, sums_dtype, knn_projection, seed)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rules = TrackingDynamics(self) if dynamics == "tracking" else PaperDynamics(self)
        # graphs[0]: samples; graphs[l + 1]: cluster centres of level l (tracking: the levels that have units above)
        self.graphs = self.rules.build_graphs(knn_slack, knn_backend)
        self.initialized = False
        self.stats: dict[str, float] = {}

    def _set_parameters(
        self,
        dynamics: str,
        preset: dict[str, object],
        *,
        k: int,
        num_levels: int,
        alpha_split: float,
        max_anchors: int,
        anchor_method: str,
        merge_only: bool,
        singletons_as_outliers: bool,
        bank: str,
    ) -> None:
        """Keep the validated parameters as typed attributes (the rule sets read them from the
        policy); a parameter the preset does not use is None."""
        self.dynamics_name = dynamics
        self.k, self.num_levels = int(k), int(num_levels)
        self.alpha_split, self.max_anchors, self.anchor_method = (
            float(alpha_split),
            int(max_anchors),
            anchor_method,
        )
        self.merge_only = bool(merge_only)
        self.link_k, self.criterion = int(preset["link_k"]), preset.get("criterion")
        self.split_gap = preset.get("split_gap")
        self.merge = preset.get("merge")
        self.edge_k, self.edge_share = preset.get("edge_k"), preset.get("edge_share")
        self.camera_centring = bool(preset.get("camera_centring"))
        self.merge_floor = preset.get("merge_floor")
        self.cross_camera_from = preset.get("cross_camera_from")
        self.alpha_merge, self.sigma = preset.get("alpha_merge"), preset.get("sigma")
        self.merge_norm = preset.get("merge_norm")
        self.init_rounds, self.refresh_rounds = (
            preset.get("init_rounds"),
            preset.get("refresh_rounds"),
        )
        self.assign = preset.get("assign")
        self.singletons_as_outliers = bool(singletons_as_outliers)
        self.sharded = bank == "sharded"

    def _build_banks(self, momentum: float, bank_dtype: str, sums_dtype: str, knn_projection: int, seed: int) -> None:
        """The feature bank and the label bank, replicated or split by rows over the ranks (docs/scaling.md)."""
        n, d = self.num_samples, self.feat_dim
        if self.sharded:  # labels, sizes and graphs stay replicated
            proj = projection_matrix(d, knn_projection, seed) if knn_projection else None
            self.bank = ShardedFeatureBank(n, d, momentum=momentum, device=self.device,
                                           dtype=_DTYPES[bank_dtype], projection=proj)
            self.label_bank = HierarchicalLabelBank(
                n, d, num_levels=self.num_levels, device=self.device,
                make_rows=lambda: RowShards(n, d, dtype=_DTYPES[sums_dtype], device=self.device,
                                            normalize_rows=True, projection=proj, compact=True))
        else:
            self.bank = FeatureBank(n, d, momentum=momentum, device=self.device, dtype=_DTYPES[bank_dtype])
            self.label_bank = HierarchicalLabelBank(n, d, num_levels=self.num_levels, device=self.device,
                                                    sums_dtype=_DTYPES[sums_dtype])

    # ------------------------------------------------------------------ contract
    def initialize(self, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Bank from a full pass, then the first labels of the chosen rule set."""
        start = time.perf_counter()
        if cameras is not None and cameras.shape != (self.num_samples,):
            raise ValueError(f"cameras must be [{self.num_samples}], got {tuple(cameras.shape)}")
        self.bank.initialize(features)
        rounds = self.rules.initialize(cameras)
        self.initialized = True
        self.stats = {"rounds": rounds or 0, "seconds": time.perf_counter() - start}

    def refresh(self) -> None:
        """Offline refresh: re-cluster the current bank from scratch (exact graphs, first labels anew)."""
        self._require_init()
        self.rules.initialize(getattr(self.rules, "cameras", None))

    def refreshes_after(self, epoch: int) -> bool:
        """Offline: every ``refresh_every`` epochs. Online with ``refresh_source: extract``: every
        epoch end (the labels re-anchored on a fresh pass)."""
        if self.refresh_every == 0 and self.refresh_source == "extract":
            return True
        return super().refreshes_after(epoch)

    def reload_bank(self, features: torch.Tensor, **extra: torch.Tensor) -> None:
        """Every bank row from a fresh feature pass; the labels follow at the refresh that comes
        next."""
        self._require_init()
        self.bank.initialize(features)

    def epoch_end(self, epoch: int) -> bool:
        self._require_init()
        ran = super().epoch_end(epoch)
        if not ran:  # clear float drift of the incremental sums (tracking: and re-apply the rules everywhere)
            self.label_bank.recompute(self.bank.storage)
            if self.refresh_every == 0:
                self.rules.rederive()
        return ran

    def step(self, indices: torch.Tensor, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Momentum update of the batch rows, then (online) the label dynamics around them."""
        self._require_init()
        rows, new_feats = self.bank.momentum_rows(indices, features)
        old_feats = self.bank.storage.gather_rows(rows).float()
        self.bank.write(rows, new_feats)
        # as stored (fp16/bf16 round), so sums match the bank
        new_feats = self.bank.storage.gather_rows(rows).float()
        lb = self.label_bank
        if self.refresh_every > 0:  # offline mode: labels wait for the refresh
            lb.move_samples(rows, lb.labels[:, rows].clone(), old_feats, new_feats)
            return
        if self.dynamics_name == "paper":
            self.rules.step(rows, old_feats, new_feats)
        else:
            self.rules.step(rows)

    def labels(self, level: int = -1) -> torch.Tensor:
        """Dense labels of ``level`` (default top); singleton clusters are -1 unless configured otherwise."""
        self._require_init()
        dense = self.label_bank.dense_labels(level)
        if self.singletons_as_outliers:
            size = self.label_bank.sizes[level][self.label_bank.labels[level]]
            dense = torch.where(size > 1, dense, torch.full_like(dense, -1))
            keep = dense >= 0
            if bool(keep.any()):
                _, dense_kept = torch.unique(dense[keep], return_inverse=True)
                dense[keep] = dense_kept
        return dense

    def memory_entries(self, centres: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
        """As the default (same entries, same order as ``labels()``), from the maintained top-level sums."""
        self._require_init()
        lb = self.label_bank
        keep = lb.sizes[-1] > (1 if self.singletons_as_outliers else 0)
        counts = lb.sizes[-1] if centres == "mean" else None
        return memory_entries_from_sums(
            lb.rows[-1], keep, lb.labels[-1], self.bank.storage, counts=counts
        )

    def state_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "initialized": self.initialized,
            "bank": self.bank.state_dict(),
            "label_bank": self.label_bank.state_dict(),
            "graphs": [graph.state_dict() for graph in self.graphs],
            "rules": self.rules.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("config") != self.config:
            diff = {k: (state.get("config", {}).get(k), v) for k, v in self.config.items()
                    if state.get("config", {}).get(k) != v}
            raise ValueError(f"hcd state is from a different configuration (checkpoint, this run): {diff}")
        self.bank.load_state_dict(state["bank"])
        self.label_bank.load_state_dict(state["label_bank"])
        for graph, graph_state in zip(self.graphs, state["graphs"], strict=True):
            graph.load_state_dict(graph_state)
        self.generator.set_state(state["generator"])
        self.rules.load_state_dict(state["rules"])
        self.initialized = bool(state["initialized"])

    def _require_init(self) -> None:
        if not self.initialized:
            raise RuntimeError("call initialize(features) before using the hcd policy")


def _validated_preset(
    dynamics: str,
    given: dict[str, object],
    *,
    k: int,
    num_levels: int,
    max_anchors: int,
    alpha_split: float,
    anchor_method: str,
    bank_dtype: str,
    bank: str,
    sums_dtype: str,
    knn_projection: int,
    knn_backend: str,
    feat_dim: int,
) -> dict[str, object]:
    """Resolve the preset and refuse any bad parameter before a bank is allocated; returns the
    preset.

    The checks run in a fixed order (preset keys, common ranges, preset ranges, scale options), so
    a configuration with several bad values always reports the same first error.
    """
    preset = _resolve_preset(dynamics, given)
    _check_common(k=k, num_levels=num_levels, max_anchors=max_anchors, alpha_split=alpha_split,
                  anchor_method=anchor_method, bank_dtype=bank_dtype, link_k=preset["link_k"])
    _check_preset(dynamics, preset)
    _check_scale_options(bank, sums_dtype, knn_projection, knn_backend, feat_dim, dynamics)
    return preset


def _resolve_preset(dynamics: str, given: dict[str, object]) -> dict[str, object]:
    """The preset's parameters: given values over its defaults; a parameter of the other rule set is an error."""
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
    other = DYNAMICS[1 - DYNAMICS.index(dynamics)]
    foreign = [key for key in _ONLY[other] if given.get(key) is not None]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} belong(s) to dynamics: {other}; this policy uses dynamics: "
                         f"{dynamics} (set dynamics: {other} to use them)")
    preset = dict(PRESET_DEFAULTS[dynamics])
    if dynamics == "tracking":
        preset["merge_floor"] = None
        merge = given.get("merge") or preset["merge"]
        unused = _CENTROID_ONLY if merge == "edges" else _EDGES_ONLY
        wrong = [key for key in unused if given.get(key) is not None]
        if wrong:
            other = "centroid" if merge == "edges" else "edges"
            raise ValueError(f"{', '.join(wrong)} belong(s) to merge: {other}; this policy uses merge: {merge} "
                             f"(set merge: {other} to use them)")
        for key in unused:
            preset.pop(key, None)
    preset.update({key: value for key, value in given.items() if value is not None})
    return preset


def _check_common(*, k: int, num_levels: int, max_anchors: int, alpha_split: float, anchor_method: str,
                  bank_dtype: str, link_k: object) -> None:
    """Refuse out-of-range values of the parameters both rule sets read."""
    _check_range("k", k, 1, None)
    _check_range("num_levels", num_levels, 1, None)
    _check_range("max_anchors", max_anchors, 1, None)
    _check_range("link_k", int(link_k), 1, k)
    if not 0.0 <= alpha_split < 1.0:
        raise ValueError(f"alpha_split must be in [0, 1), got {alpha_split}")
    if anchor_method not in ANCHOR_METHODS:
        raise ValueError(f"anchor_method must be one of {ANCHOR_METHODS}, got {anchor_method!r}")
    if bank_dtype not in _DTYPES:
        raise ValueError(f"bank_dtype must be one of {sorted(_DTYPES)}, got {bank_dtype!r}")


def _check_preset(dynamics: str, preset: dict[str, object]) -> None:
    """Refuse out-of-range values of the preset's own parameters."""
    if "criterion" in preset and preset["criterion"] not in CRITERIA[dynamics]:
        raise ValueError(f"criterion must be one of {CRITERIA[dynamics]} for dynamics: {dynamics}, "
                         f"got {preset['criterion']!r}")
    if dynamics == "tracking":
        if preset["merge"] not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {preset['merge']!r}")
        if not isinstance(preset["camera_centring"], bool):
            raise ValueError(f"camera_centring must be true or false, got {preset['camera_centring']!r}")
        if preset["merge"] == "edges":
            _check_range("edge_k", int(preset["edge_k"]), 1, None)
            if not 0.0 < float(preset["edge_share"]) <= 2.0:
                raise ValueError(f"edge_share must be in (0, 2] (edges per edge of the smaller unit, both "
                                 f"directions), got {preset['edge_share']}")
        if not float(preset["split_gap"]) > 0.0:
            raise ValueError(f"split_gap must be > 0, got {preset['split_gap']}")
        floor = preset.get("merge_floor")
        if floor is not None and not -1.0 <= float(floor) <= 1.0:
            raise ValueError(f"merge_floor must be a cosine in [-1, 1] (or null = calibrated), got {floor}")
        if preset["merge"] == "centroid":
            _check_range("cross_camera_from", int(preset["cross_camera_from"]), 1, None)
        return
    if not 0.0 <= float(preset["alpha_merge"]) < 1.0:
        raise ValueError(f"alpha_merge must be in [0, 1), got {preset['alpha_merge']}")
    if not 0.0 < float(preset["sigma"]) < 1.0:
        raise ValueError(f"sigma must be in (0, 1), got {preset['sigma']}")
    if preset["merge_norm"] not in MERGE_NORMS:
        raise ValueError(f"merge_norm must be one of {MERGE_NORMS}, got {preset['merge_norm']!r}")
    if preset["assign"] not in ("nearest", "mutual"):
        raise ValueError(f"assign must be 'nearest' or 'mutual', got {preset['assign']!r}")
    _check_range("init_rounds", int(preset["init_rounds"]), 0, None)
    _check_range("refresh_rounds", int(preset["refresh_rounds"]), 1, None)


def _check_scale_options(bank: str, sums_dtype: str, knn_projection: int, knn_backend: str, feat_dim: int,
                         dynamics: str) -> None:
    """Refuse bad values of the scale-out keys (docs/scaling.md) with the allowed ones named."""
    if bank not in ("replicated", "sharded"):
        raise ValueError(f"bank must be 'replicated' or 'sharded', got {bank!r}")
    if sums_dtype not in _DTYPES:
        raise ValueError(f"sums_dtype must be one of {sorted(_DTYPES)}, got {sums_dtype!r}")
    if knn_projection and bank != "sharded":
        raise ValueError("knn_projection > 0 needs bank: sharded (any number of processes, 1 included)")
    if knn_projection and not 0 < knn_projection < feat_dim:
        raise ValueError(f"knn_projection must be 0 or in (0, feat_dim={feat_dim}), got {knn_projection}")
    if bank == "sharded" and knn_backend != "torch":
        raise ValueError("bank: sharded searches its shards with torch; knn_backend must be 'torch'")
    if bank == "sharded" and dynamics != "paper":
        raise ValueError("bank: sharded is implemented for dynamics: paper only; set dynamics: paper")


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")
