"""Speed of the networks in NCHW against channels-last (``train.channels_last``), one CPU thread.

For each config's network (default: ``configs/cpu_cuhk03.yaml``'s ONNX OSNet x0.25 at 256x128, which needs
``../shared``, and ``configs/demo.yaml``'s OSNet x1.0 at 64x32), built by ``build_network`` with
``train.channels_last`` false then true, on the same random images:

* train step: forward + backward of one training batch (the config's source + target batch) in train mode;
* extract: a no-grad eval-mode forward of one ``eval.batch_size`` batch (what every extraction repeats);
* how far each layout's embeddings and gradients are from an fp64 NCHW pass of the same weights and
  images (largest error over the largest value): both are fp32 with sums in different orders;
* for reference only, the train step under ``torch.autocast("cpu", bfloat16)`` with channels-last
  (streamlabel does not use it: it changes the numbers, and CPUs without AMX / AVX512-BF16 gain little).

Each timing is the median of ``--repeats`` after one warm-up, the layouts interleaved so that a change of
machine load hits both.

    OMP_NUM_THREADS=1 python benchmarks/channels_last.py [--configs a.yaml,b.yaml] [--repeats 5] [--out DIR | --publish]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as rep  # noqa: E402

from streamlabel.engine.setup import build_network  # noqa: E402
from streamlabel.evaluation.extract import model_embedding  # noqa: E402
from streamlabel.launch.run_config import load_run_config  # noqa: E402

LAYOUTS = {"nchw": False, "channels_last": True}


def _step(model: torch.nn.Module, images: torch.Tensor, bf16: bool = False) -> tuple[float, torch.Tensor]:
    """Seconds of one forward + backward in train mode, and the embedding."""
    model.train()
    model.zero_grad(set_to_none=True)
    begin = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        emb = model_embedding(model(images))
    emb.float().pow(2).sum().backward()
    return time.perf_counter() - begin, emb.detach().float()


@torch.no_grad()
def _extract(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Seconds of one eval-mode forward."""
    model.eval()
    begin = time.perf_counter()
    model_embedding(model(images))
    return time.perf_counter() - begin


def _gradients(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def measure(config: str, repeats: int) -> dict:
    """The timings of one config's network in both layouts (and bf16 for reference)."""
    cfgs = {name: load_run_config(config, [f"train.channels_last={str(flag).lower()}"])
            for name, flag in LAYOUTS.items()}
    cfg = cfgs["nchw"]
    torch.manual_seed(0)
    models = {name: build_network(c) for name, c in cfgs.items()}
    models["channels_last"].load_state_dict(models["nchw"].state_dict())
    batch = cfg["train"]["source_batch"] + cfg["train"]["target_batch"]
    size = (cfg["data"]["height"], cfg["data"]["width"])
    train_images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    eval_images = torch.randn(cfg["eval"]["batch_size"], 3, *size, generator=torch.Generator().manual_seed(2))
    times: dict[str, list[float]] = {f"{kind}_{name}": [] for kind in ("train", "extract") for name in LAYOUTS}
    times["train_bf16_channels_last"] = []
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, model in models.items():
            seconds, emb = _step(model, train_images)
            if round_ == 0:
                outputs[name] = (emb, _gradients(model))
            else:
                times[f"train_{name}"].append(seconds)
                times[f"extract_{name}"].append(_extract(model, eval_images))
        seconds, _ = _step(models["channels_last"], train_images, bf16=True)
        if round_:
            times["train_bf16_channels_last"].append(seconds)
    reference = build_network(cfg).double()  # fp64 NCHW: how far each fp32 layout is from exact
    reference.load_state_dict(models["nchw"].state_dict())
    _, emb_ref = _step(reference, train_images.double())
    emb_ref, grad_ref = emb_ref.double(), _gradients(reference).double()
    errors = {}
    for name, (emb, grad) in outputs.items():
        errors[f"embedding_error_{name}"] = float((emb.double() - emb_ref).abs().max() / emb_ref.abs().max())
        errors[f"gradient_error_{name}"] = float((grad.double() - grad_ref).abs().max() / grad_ref.abs().max())
    return {"config": config, "model": cfg["model"]["name"], "train_batch": batch, "image": list(size),
            "eval_batch": cfg["eval"]["batch_size"],
            **{f"{key}_s": statistics.median(values) for key, values in times.items()}, **errors}


def markdown(report: dict) -> str:
    lines = ["# Channels-last against NCHW: the networks' speed on the CPU", "",
             f"Commit {report['commit']}. Machine: {rep.machine_line(report['machine'])}. Median of "
             f"{report['repeats']} repeats after a warm-up, layouts interleaved. Command: `{report['command']}`.",
             "",
             "| config | model | train step NCHW s | channels-last s | speed-up | extract NCHW s | channels-last s "
             "| speed-up | embedding error NCHW / channels-last | gradient error NCHW / channels-last "
             "| bf16 + channels-last train step s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if "skipped" in row:
            lines.append(f"| {row['config']} | skipped: {row['skipped']} |" + " |" * 9)
            continue
        lines.append(
            f"| {row['config']} | {row['model']} ({row['train_batch']} x {row['image'][0]}x{row['image'][1]}) | "
            f"{row['train_nchw_s']:.2f} | {row['train_channels_last_s']:.2f} | "
            f"{row['train_nchw_s'] / row['train_channels_last_s']:.2f}x | {row['extract_nchw_s']:.2f} | "
            f"{row['extract_channels_last_s']:.2f} | {row['extract_nchw_s'] / row['extract_channels_last_s']:.2f}x | "
            f"{row['embedding_error_nchw']:.1e} / {row['embedding_error_channels_last']:.1e} | "
            f"{row['gradient_error_nchw']:.1e} / {row['gradient_error_channels_last']:.1e} | "
            f"{row['train_bf16_channels_last_s']:.2f} |")
    lines += ["", "Train step: forward + backward of one training batch (train mode, a sum-of-squares loss on the "
              "embeddings); extract: one no-grad eval batch. Errors: the largest difference from an fp64 NCHW pass "
              "of the same weights and images, over its largest value (train mode, first step). The bf16 column is "
              "for reference: streamlabel trains in fp32 on the CPU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="configs/cpu_cuhk03.yaml,configs/demo.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    rep.add_output_arguments(parser, "channels_last")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"commit": rep.commit(), "machine": rep.machine(), "command": rep.command_line(),
              "repeats": args.repeats, "rows": []}
    for config in [c for c in args.configs.split(",") if c.strip()]:
        try:
            row = measure(config, args.repeats)
        except (FileNotFoundError, ImportError) as err:  # the ONNX model lives in ../shared
            row = {"config": config, "skipped": str(err).splitlines()[0]}
        print(row, flush=True)
        report["rows"].append(row)
    rep.wrote("channels_last", *rep.write(rep.output_dir(args), args.name, report, markdown(report)))


if __name__ == "__main__":
    main()
