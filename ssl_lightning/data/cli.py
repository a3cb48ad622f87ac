"""``ssl-lightning-data``: data tools on the command line.

``ssl-lightning-data optimize <image folder> <output dir> [--image-size 32] [--num-workers N]`` writes a
folder of class folders as LitData chunks (:func:`~ssl_lightning.data.streaming.optimize_image_folder`) for
:class:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule`. It refuses a non-empty output
folder.

Example::

    ssl-lightning-data optimize data/flowers/train data/flowers_ld/train --image-size 64 --num-workers 8
"""

from __future__ import annotations

import argparse
import sys

from ssl_lightning.data.streaming import optimize_image_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-lightning-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    optimize = commands.add_parser("optimize", help="write an image folder as LitData chunks")
    optimize.add_argument("root", help="folder of class folders (<root>/<class>/*.png)")
    optimize.add_argument("output_dir", help="new or empty folder for the chunks")
    optimize.add_argument("--image-size", type=int, default=None, help="resize to SIZE x SIZE (default: keep)")
    optimize.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 (grey) or 3 (RGB)")
    optimize.add_argument("--class-depth", type=int, default=1, help="folder levels that name a class")
    optimize.add_argument(
        "--encoding", choices=("raw", "encoded"), default="raw", help="raw uint8 pixels or the files' bytes"
    )
    optimize.add_argument("--num-workers", type=int, default=1, help="writer processes")
    optimize.add_argument("--chunk-bytes", default="64MB", help="target chunk file size (e.g. 64MB)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        meta = optimize_image_folder(
            args.root,
            args.output_dir,
            image_size=args.image_size,
            channels=args.channels,
            class_depth=args.class_depth,
            encoding=args.encoding,
            num_workers=args.num_workers,
            chunk_bytes=args.chunk_bytes,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"ssl-lightning-data: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {meta.num_items} images of {len(meta.class_names)} classes {meta.shape} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
