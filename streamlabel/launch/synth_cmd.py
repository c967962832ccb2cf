"""`streamlabel synth`: preview the synthetic re-ID domains or write them in Market-1501 layout."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from streamlabel.config.limits import MAX_IMAGE_SIDE, MAX_SEED, human_bytes, memory_problem
from streamlabel.launch.arg_checks import in_range, output_file, output_folder
from streamlabel.launch.cli import CommandError

DOMAIN_CHOICES = ("source", "target", "both")
MIN_SIDE = 8  # pixels: below this a rendered person is a smudge
# upper bounds of the size flags (Market-1501 has 1,501 ids, 6 cameras; MSMT17 4,101 ids, 15 cameras)
UPPER = {"ids": 10_000, "shots": 100, "train_ids": 100_000, "test_ids": 100_000, "cams": 100,
         "images_per_cam": 1_000}
MAX_IMAGES = 5_000_000  # images one `synth --out` writes (Market-1501 has 32,668)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `streamlabel synth`."""
    parser.add_argument("--preview", metavar="PNG", help="save a grid: identities x (cameras x shots)")
    parser.add_argument("--out", metavar="DIR", help="write Market-1501 folders (DIR/source, DIR/target)")
    parser.add_argument("--domain", choices=DOMAIN_CHOICES, default="both", help="which domain(s) to preview or write")
    parser.add_argument("--seed", type=int, default=0, help="same seed, byte-identical images")
    parser.add_argument("--ids", type=int, default=8, help="identities in the preview")
    parser.add_argument("--shots", type=int, default=2, help="shots per camera in the preview")
    parser.add_argument("--train-ids", type=int, default=100, help="train ids")
    parser.add_argument("--test-ids", type=int, default=50, help="query/gallery identities")
    parser.add_argument("--cams", type=int, default=4, help="cameras per domain")
    parser.add_argument("--images-per-cam", type=int, default=4, help="mean shots per id and camera")
    parser.add_argument("--height", type=int, help="image height (default: 64 for --out, 128 for --preview)")
    parser.add_argument("--width", type=int, help="image width (default: 32 for --out, 64 for --preview)")
    parser.add_argument("--overwrite", action="store_true", help="replace images already in --out")
    parser.add_argument("--quiet", action="store_true", help="no summary lines (errors still print)")


def _check_sizes(args: argparse.Namespace) -> None:
    """The flags together: the preview grid must fit in memory, the written images on the disk (estimates,
    refused with the numbers before anything is rendered or written)."""
    panels = 2 if args.domain == "both" else 1
    if args.preview:
        height, width = args.height or 128, args.width or 64
        pixels = panels * args.ids * args.cams * args.shots * height * width
        # rendered in float64 RGB with a few intermediate buffers, then one 8-bit grid
        problem = memory_problem(pixels * 3 * 8 * 4, f"--preview of {args.ids} ids x {args.cams} cameras x "
                                                     f"{args.shots} shots at {height} x {width}")
        if problem:
            raise CommandError(f"{problem}; lower --ids, --shots, --cams or the image size")
    if args.out:
        height, width = args.height or 64, args.width or 32
        images = panels * (args.train_ids + 2 * args.test_ids) * args.cams * args.images_per_cam
        if images > MAX_IMAGES:
            raise CommandError(f"--out would write about {images:,} images ((--train-ids + 2 x --test-ids) x --cams "
                               f"x --images-per-cam per domain); at most {MAX_IMAGES:,} are written by one command")
        probe = Path(args.out).resolve()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError:
            return
        if usage.total == 0:  # /proc, /sys: no disk at all; the output check says why nothing can be written
            return
        free = usage.free
        needed = images * height * width * 3 // 20  # a JPEG of these noisy renders: ~1/20 of the raw pixels at least
        if needed > free:
            raise CommandError(f"--out would write about {images:,} images of {height} x {width}, at least "
                               f"{human_bytes(needed)}, more than the {human_bytes(free)} free at {probe}")


def run(args: argparse.Namespace) -> dict:
    """Write the preview and/or the Market folders; returns what was written."""
    from streamlabel.data.synthetic import check_synthetic_root, preview_grid, write_synthetic_market

    if not args.preview and not args.out:
        raise CommandError("give --preview PNG and/or --out DIR")
    for flag in ("ids", "shots", "train_ids", "cams", "images_per_cam", "test_ids"):
        in_range(f"--{flag.replace('_', '-')}", getattr(args, flag), 1)  # a domain without test ids has no query
        in_range(f"--{flag.replace('_', '-')}", getattr(args, flag), None, UPPER[flag])
    in_range("--seed", args.seed, 0, MAX_SEED)
    for flag in ("height", "width"):
        if getattr(args, flag) is not None:
            in_range(f"--{flag}", getattr(args, flag), MIN_SIDE)
            in_range(f"--{flag}", getattr(args, flag), None, MAX_IMAGE_SIDE)
    preview = output_file(Path(args.preview), ".png", "--preview") if args.preview else None
    domains = ("source", "target") if args.domain == "both" else (args.domain,)
    roots = {name: Path(args.out) / name if args.domain == "both" else Path(args.out)
             for name in domains} if args.out else {}
    if args.out:
        output_folder(Path(args.out))
        for root in roots.values():  # every domain's folder before the first is written
            try:
                check_synthetic_root(root, args.overwrite)
            except FileExistsError as err:
                raise CommandError(str(err)) from err
            except PermissionError as err:
                raise CommandError(f"--out: {err.strerror}") from err
    _check_sizes(args)
    result: dict = {"seed": args.seed, "domain": args.domain}
    say = (lambda _line: None) if args.quiet else print
    if args.preview:
        height, width = args.height or 128, args.width or 64
        image = preview_grid(args.domain, args.seed, args.ids, args.shots, args.cams, height, width)
        path = preview
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        result["preview"] = {"path": str(path), "width": image.width, "height": image.height}
        say(f"synth: preview of {args.ids} identities x {args.cams} cameras ({args.domain}) -> {path}")
    if args.out:
        sizes = {
            "num_train_ids": args.train_ids,
            "num_test_ids": args.test_ids,
            "num_cams": args.cams,
            "images_per_cam": args.images_per_cam,
            "height": args.height or 64,
            "width": args.width or 32,
        }
        result["datasets"] = {}
        for name in domains:
            root = roots[name]
            try:
                summary = write_synthetic_market(root, args.seed, name, args.overwrite, **sizes)
            except FileExistsError as err:
                raise CommandError(str(err)) from err
            result["datasets"][name] = summary
            say(
                f"synth: {name} -> {root}: {summary['train']} train ({summary['train_ids']} ids), "
                f"{summary['query']} query, {summary['gallery']} gallery ({summary['test_ids']} ids), "
                f"{summary['cameras']} cameras"
            )
    return result
