"""``dif import-reference``: convert reference checkpoints into fingerprint artifacts.

Only the parser is built at import; the handler imports torch and the importer when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dif.artifact import Fingerprint


def _report(fp: Fingerprint, out: Path) -> None:
    cal = fp.calibration
    print(f"wrote {out} (real centre {cal.real_centre:+.4f}, fake centre {cal.fake_centre:+.4f}; "
          f"extractor mismatch: scored with {fp.extractor_key}, trained with the reference DnCNN)")


def cmd_import_reference(args: argparse.Namespace) -> int:
    from dif.artifact import save_fingerprint
    from dif.errors import ArtifactError
    from training.importer import default_name, import_reference, reference_folders

    if args.all:
        if args.name:
            raise ArtifactError("--name names one artifact; with --all each is named after its folder")
        for folder in reference_folders(args.ckpt_dir):
            fp = import_reference(folder, default_name(folder))
            _report(fp, save_fingerprint(fp, args.out / fp.name))
        return 0
    fp = import_reference(args.ckpt_dir, args.name)
    _report(fp, save_fingerprint(fp, args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-reference",
        help="convert a reference checkpoint folder (chk_<k>.pt + train_hypers.pt) into a fingerprint artifact",
        description="Pickles are never trusted: checkpoints load with weights_only, hyper-parameters with a "
                    "restricted unpickler that only builds plain values and torch.device.",
    )
    p.add_argument("ckpt_dir", type=Path, help="a generator folder, or with --all a folder of generator folders")
    p.add_argument("--out", required=True, type=Path,
                   help="artifact folder to write (with --all: the parent folder, one artifact per generator)")
    p.add_argument("--name", default=None, help="generator name (default: the folder's name)")
    p.add_argument("--all", action="store_true", help="CKPT_DIR holds several generator folders")
    p.set_defaults(func=cmd_import_reference)
