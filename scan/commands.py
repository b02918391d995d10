"""Parsers of ``dif detect`` and ``dif scan``. Light on purpose (help never imports torch or ray):
each handler imports its runner, ``scan.local`` or ``scan.cluster``, when the command runs."""

from __future__ import annotations

import argparse

from dif.errors import DifError

DEFAULT_FPR = "0.01"  # dif.decision.DEFAULT_RATE, as text: importing dif.decision would load torch
FINGERPRINTS_HELP = ("folder of artifact folders, one per generator "
                     "(default: DIF_FINGERPRINTS_DIR, else the embedded set)")
EXIT_CODES = """\
exit codes:
  0  every file was scored
  1  some files could not be (their rows carry error_code and error)
  2  usage error: bad option, no such path, no valid fingerprint set"""

DETECT_ABOUT = """\
Every file named, and every file under a named folder (recursively), gets one row: verdict
(fake, inconclusive, real), the generator blamed (top) when one clearly stands out, the
family-wise p-value and each generator's p-value and score, decided exactly as POST /detect
decides, plus the image's declared provenance (C2PA, IPTC, generator metadata). A file that
cannot be scored (not an image, corrupt, too small) gets a row with its error; the run goes on."""

SCAN_ABOUT = """\
Ray Data lists SOURCE, reads the files and decodes and crops them in CPU tasks; an actor pool
(one fingerprint set loaded per actor, on a GPU with --num-gpus-per-worker) scores them, and the
rows (the columns of `dif detect --json`) are written as Parquet files under DEST.

SOURCE: a folder (recursive), a glob, a .txt file of paths or URIs (one a line), or a URI that
pyarrow reads (s3://bucket/prefix, gs://..., file:///...). Without --ray-address the scan joins
the cluster RAY_ADDRESS or `ray start` on this machine names, else starts a Ray instance here for
the run; `--ray-address auto` insists on joining one (as in a KubeRay RayJob), ray://HOST:10001
reaches a remote one."""


def cmd_detect(args: argparse.Namespace) -> int:
    from scan.local import cmd_detect as detect

    return detect(args)


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        from scan.cluster import cmd_scan as scan
    except ModuleNotFoundError as exc:  # the service image, or an install without the extra
        if exc.name not in ("ray", "pyarrow"):
            raise
        raise DifError(f"dif scan needs Ray Data ({exc.name} is not installed): pip install 'dif-service[scan]', "
                       "or use the scan image (docker build --target scan)") from exc
    return scan(args)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fingerprints", metavar="DIR", default=None, help=FINGERPRINTS_HELP)
    p.add_argument("--extractor-dir", metavar="DIR", default=None,
                   help="weights of a learned residual extractor (dncnn@1) (default: DIF_EXTRACTOR_DIR)")
    p.add_argument("--fpr", metavar="RATE", default=DEFAULT_FPR,
                   help="false-positive rate of the whole set: the chance a real photo is called fake")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="images per forward pass (default: 8 on a CPU, 32 on a GPU)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 + channels-last for a learned extractor on a GPU (DIF_PRECISION); "
                        "fixed filters always run fp32")
    p.add_argument("--max-pixels", type=int, default=40_000_000, metavar="N",
                   help="larger images are refused from their header (DIF_MAX_PIXELS)")
    p.add_argument("--trust-anchors", metavar="PEM", default=None,
                   help="CA certificates whose C2PA signers count as trusted (without: every signer is untrusted)")


def register(sub: argparse._SubParsersAction) -> None:
    detect = sub.add_parser("detect", help="score image files and folders on this machine",
                            description=DETECT_ABOUT, epilog=EXIT_CODES)
    detect.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (recursive)")
    _common(detect)
    out = detect.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per image on stdout instead of text")
    out.add_argument("--csv", metavar="FILE", default=None, help="write the rows as CSV to FILE ('-': stdout)")
    detect.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available (DIF_DEVICE)")
    detect.add_argument("--decode-threads", type=int, default=2, metavar="N",
                        help="threads reading, decoding and cropping files while the model scores")
    detect.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    detect.set_defaults(func=cmd_detect)

    scan = sub.add_parser("scan", help="score a whole collection on a Ray cluster into Parquet",
                          description=SCAN_ABOUT, epilog=EXIT_CODES)
    scan.add_argument("sources", nargs="+", metavar="SOURCE",
                      help="folder, glob, .txt list of paths/URIs, or URI (s3://, gs://, file://)")
    scan.add_argument("--out", required=True, metavar="DEST", help="folder or URI the Parquet files are written to")
    _common(scan)
    scan.add_argument("--ray-address", metavar="ADDR", default=None,
                      help="auto, ray://HOST:PORT, or local for a fresh Ray here (default: RAY_ADDRESS, else "
                           "a cluster already running on this machine, else a Ray started here for this run)")
    scan.add_argument("--workers", type=int, default=None, metavar="N",
                      help="scoring actors (default: from 1 up to one per GPU the cluster has or grows to, "
                           "or up to half its CPUs)")
    scan.add_argument("--num-gpus-per-worker", type=float, default=0.0, metavar="G",
                      help="GPUs per scoring actor: 1 for one each, 0.5 for two sharing one, 0 for CPU actors")
    scan.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                      help="CPUs per scoring actor (its torch threads)")
    scan.add_argument("--resume", action="store_true",
                      help="skip the files DEST already has a row for (same fingerprint set required)")
    scan.set_defaults(func=cmd_scan)
