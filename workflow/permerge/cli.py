"""Command line: ``permerge align`` and ``permerge merge`` (more subcommands register via SUBCOMMANDS).

  permerge align --model-a A --model-b B --text FILE --options VARIANT.yaml --out DIR
      matching.align_pair with the variant's method (statistics on FILE, one text per line, tokenizer of A,
      where the method reads them), writes aligned B to DIR (save_pretrained layout + tokenizer) and
      DIR/permutations.safetensors.
  permerge merge --model-a A --aligned-b DIR --lam 0.5 --out DIR
      theta(lam) = (1 - lam) * A + lam * aligned B.

Outputs are written to a temporary sibling directory and renamed into place, so a failed run leaves no
partial output. Input errors exit with status 1 and a message naming the cause.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .families import model_types
from .models import ARCHITECTURES

log = logging.getLogger("permerge")

# The encoders permerge.alignment.spec supports (post-LN, absolute positions; families.FAMILIES); align/merge load
# them by this name.
MODEL_CLASSES = ARCHITECTURES
MODEL_TYPES = tuple(model_types())
PERMUTATIONS_FILE = "permutations.safetensors"


class CliError(Exception):
    """Bad input detected by the command line layer; the message is shown to the user."""


# ---------------------------------------------------------------- helpers shared by subcommands


def existing_model_dir(path: str | Path, role: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CliError(f"{role}: directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise CliError(f"{role}: {path} has no config.json (not a save_pretrained directory)")
    return path


def load_config(path: Path, role: str):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as err:  # transformers raises several types for unreadable configs
        raise CliError(f"{role}: cannot read {path / 'config.json'}: {err}") from err
    if getattr(config, "model_type", None) not in MODEL_TYPES:
        raise CliError(
            f"{role}: model_type {getattr(config, 'model_type', None)!r} is not supported "
            f"(expected one of {', '.join(MODEL_TYPES)})"
        )
    archs = config.architectures or []
    if len(archs) != 1 or archs[0] not in MODEL_CLASSES:
        raise CliError(f"{role}: unsupported architectures {archs} (expected one of {', '.join(MODEL_CLASSES)})")
    return config


def load_model(path: Path, config):
    """models.load_model (the class config.architectures names, safetensors only, eval mode); its errors,
    which name the file, become CliErrors. `config` is the one load_config checked."""
    from . import models

    try:
        return models.load_model(path)
    except (FileNotFoundError, ValueError) as err:  # ValueError includes io.DamagedFile
        raise CliError(str(err)) from None


def has_tokenizer(path: Path) -> bool:
    from .checkpoints import TOKENIZER_FILES

    return any((path / f).is_file() for f in TOKENIZER_FILES)


def read_lines(path: str | Path, max_lines: int | None) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise CliError(f"text file {path} does not exist")
    from .io import DamagedFile, read_text_lines

    try:
        lines = read_text_lines(path, max_lines)
    except DamagedFile as err:
        raise CliError(str(err)) from None
    if not lines:
        raise CliError(f"text file {path} has no non-empty lines")
    return lines


def read_variant(path: str | Path, key: str | None = None):
    """A Variant from a YAML mapping of options (or the mapping under ``key``/``variants.key``)."""
    import yaml

    from permerge.alignment.variants import Variant

    path = Path(path)
    if not path.is_file():
        raise CliError(f"options file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CliError(f"options file {path} is not valid YAML: {err}") from err
    if data is None:
        data = {}
    name = path.stem
    if key is not None:
        table = data.get("variants", data) if isinstance(data, dict) else None
        if not isinstance(table, dict) or key not in table:
            raise CliError(f"options file {path} has no variant {key!r}")
        data, name = table[key], key
    return Variant.from_mapping(data, name=name)


def check_out(out: Path, *inputs: Path) -> Path:
    out = Path(out)
    for p in inputs:
        if out.resolve() == p.resolve():
            raise CliError(f"--out {out} would overwrite the input {p}")
    return out


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- align


def cmd_align(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from permerge.alignment.matchers import method
    from permerge.alignment.matching import Pair, align_pair, pair_seed
    from permerge.alignment.stats import collect_statistics, first_fraction, text_batches
    from permerge.merging.permute import apply_permutations
    from permerge.training.finetune import without_shared_pooler

    from .checkpoints import check_compatible, json_metadata, save_permutations, save_pretrained_atomic

    dir_a = existing_model_dir(args.model_a, "--model-a")
    dir_b = existing_model_dir(args.model_b, "--model-b")
    out = check_out(args.out, dir_a, dir_b)
    variant = read_variant(args.options, args.variant)
    config_a, config_b = load_config(dir_a, "--model-a"), load_config(dir_b, "--model-b")
    check_compatible(config_a, config_b)
    # as the workflow: poolers that every seed drew from finetune.head_seed are aligned by index
    variant, note = without_shared_pooler(variant, [dir_a, dir_b])
    if note:
        log.info("pooler %s", note)
    reads = method(variant.method)
    use_stats = bool(variant.components) and reads.statistics
    lines = []
    if use_stats:
        if args.text is None:
            raise CliError(f"--text is required: method {variant.method!r} matches activation statistics")
        if not has_tokenizer(dir_a):
            raise CliError(f"--model-a: {dir_a} has no tokenizer files")
        # The file prefix (capped by --max-lines) is the sample; stats_fraction takes its first part.
        lines = first_fraction(read_lines(args.text, args.max_lines), variant.stats_fraction or 1.0)

    log.info(
        "variant %s (%s)",
        json.dumps(variant.to_dict(), sort_keys=True),
        "function-preserving" if variant.function_preserving else "NOT function-preserving",
    )
    device = args.device or default_device()
    model_a = load_model(dir_a, config_a).to(device)
    model_b = load_model(dir_b, config_b).to(device)

    stats = None
    if use_stats:
        # batched by length, as the workflow's statistics job does: the same sums over the same batches
        tokenizer = AutoTokenizer.from_pretrained(str(dir_a))
        batches = text_batches(tokenizer, lines, batch_size=args.batch_size, max_length=args.max_length, by_length=True)
        stats = collect_statistics([model_a, model_b], batches, names=["a", "b"], device=device)
        log.info("statistics on %d texts, %d tokens", len(lines), stats.num_tokens)
    elif variant.components:
        log.info("method %s: no statistics", variant.method)
    else:
        log.info("vanilla variant: no statistics, identity permutations")
    # weight matching's visiting order: seeded by the pair's name, the two directories' (the workflow's seed{s})
    pair = Pair(
        config=config_a,
        stats=stats,
        params_a=model_a,
        params_b=model_b,
        seed=pair_seed(dir_a.name, dir_b.name),
    )
    result = align_pair(variant, pair)
    perms = result.perms
    aligned = apply_permutations(model_b.cpu(), perms)
    log.info("permutations: %s", ", ".join(sorted(perms)) or "none")

    meta = json_metadata(
        variant=variant.to_dict(),
        function_preserving=variant.function_preserving,
        model_a=str(dir_a),
        model_b=str(dir_b),
        text=str(args.text),
        texts=len(lines),
        tokens=stats.num_tokens if stats is not None else 0,
        **result.info,
    )
    tok_dir = dir_b if has_tokenizer(dir_b) else dir_a
    save_pretrained_atomic(
        aligned, out, tok_dir, write_extra=lambda tmp: save_permutations(perms, tmp / PERMUTATIONS_FILE, meta)
    )
    log.info("wrote aligned model B to %s", out)
    return 0


def add_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="permute model B into model A's basis",
        description="Match the units of B to A's by the variant's method (activation: statistics of A and B "
        "on a text file, matched by correlation; weight: from the weights alone; hybrid: both) and write the "
        "permuted (aligned) B: the permutations the workflow computes for the same variant and pair.",
    )
    p.add_argument("--model-a", required=True, help="reference model directory (save_pretrained layout)")
    p.add_argument("--model-b", required=True, help="model directory to permute")
    p.add_argument(
        "--text", default=None, help="text file, one sentence/paragraph per line (methods that read statistics)"
    )
    p.add_argument("--options", required=True, help="YAML file with the variant options")
    p.add_argument(
        "--variant",
        default=None,
        help="name of the variant inside the options file (a mapping of variants, or its "
        "'variants' section); default: the file itself is the variant",
    )
    p.add_argument("--out", required=True, help="output directory (aligned B + permutations.safetensors)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--max-length", type=_positive_int, default=128)
    p.add_argument("--max-lines", type=_positive_int, default=None, help="use at most this many lines")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=cmd_align)


# ---------------------------------------------------------------- merge


def cmd_merge(args: argparse.Namespace) -> int:
    from permerge.merging.interpolate import interpolate

    from .checkpoints import check_compatible, save_pretrained_atomic

    if not math.isfinite(args.lam):
        raise CliError(f"--lam must be a finite number, got {args.lam}")
    dir_a = existing_model_dir(args.model_a, "--model-a")
    dir_b = existing_model_dir(args.aligned_b, "--aligned-b")
    out = check_out(args.out, dir_a, dir_b)
    config_a, config_b = load_config(dir_a, "--model-a"), load_config(dir_b, "--aligned-b")
    check_compatible(config_a, config_b)
    model_a, model_b = load_model(dir_a, config_a), load_model(dir_b, config_b)
    merged = interpolate(model_a, model_b, args.lam)
    tok_dir = dir_a if has_tokenizer(dir_a) else (dir_b if has_tokenizer(dir_b) else None)
    save_pretrained_atomic(merged, out, tok_dir)
    log.info("wrote theta(%g) = (1 - %g) * A + %g * B to %s", args.lam, args.lam, args.lam, out)
    return 0


def add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="interpolate model A and an aligned model B",
        description="Write theta(lam) = (1 - lam) * theta_A + lam * theta_B.",
    )
    p.add_argument("--model-a", required=True)
    p.add_argument("--aligned-b", required=True, help="output directory of 'permerge align'")
    p.add_argument("--lam", type=float, default=0.5, help="interpolation weight of B (default 0.5)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)


# ---------------------------------------------------------------- entry point

# Each entry adds one subparser (and sets func); new subcommands append their registrar here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_align, add_merge]

from permerge.reporting.resultsmd import add_results  # noqa: E402
from permerge.reporting.runtime import add_runtime  # noqa: E402
from permerge.tooling.bench import add_bench  # noqa: E402  (permerge bench; its heavy imports happen when it runs)

SUBCOMMANDS.extend([add_bench, add_runtime, add_results])


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="permerge", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (with tracebacks)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s permerge %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, KeyError, OSError) as err:
        # ValueError covers VariantError and check_compatible; the message names the cause.
        log.debug("traceback", exc_info=True)
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"permerge {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
