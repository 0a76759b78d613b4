"""A tiny MOVi-D/E dataset in real TFDS form, built locally (no network).

Defines TFDS builders named ``movi_d`` / ``movi_e`` with the config ``{R}x{R}``, version 1.0.0,
and the part of Kubric's feature spec that matters to an exporter: ``video`` (``Video``,
uint8 ``[T, R, R, 3]``, PNG-encoded frames), ``segmentations`` (``Sequence`` of uint8
``[R, R, 1]`` images), plus ``depth`` (uint16 images), ``metadata`` and per-instance
``instances`` that the exporter must leave undecoded. Records are deterministic
(:func:`record`), so a test can compare an export pixel for pixel.

Run as a script to prepare a dataset (in a separate process, so that the process that exports
has no builder class registered and opens the files exactly as it would open Kubric's bucket)::

    python movi_tfds_fixture.py DATA_DIR --name movi_e --resolution 16 --frames 4 \
        --splits train=6 validation=2 test=2
"""

from __future__ import annotations

import argparse
import zlib

import numpy as np

VERSION = "1.0.0"


def record(split: str, index: int, frames: int, resolution: int) -> dict:
    """The deterministic record ``index`` of ``split``: moving squares on a noisy background.

    Returns ``video`` uint8 ``[T, R, R, 3]``, ``segmentations`` uint8 ``[T, R, R, 1]`` (0 =
    background, instance ``k`` has id ``k + 1``), ``depth`` uint16 ``[T, R, R, 1]``,
    ``metadata`` and ``instances``.
    """
    rng = np.random.default_rng([zlib.crc32(split.encode()), index])
    num_instances = int(rng.integers(1, 6))
    video = rng.integers(0, 256, (frames, resolution, resolution, 3), dtype=np.uint8)
    seg = np.zeros((frames, resolution, resolution, 1), np.uint8)
    side = max(2, resolution // 4)
    start = rng.integers(0, resolution - side, (num_instances, 2))
    for t in range(frames):
        for k, (y, x) in enumerate(start):
            y0, x0 = (y + t) % (resolution - side), (x + 2 * t) % (resolution - side)
            seg[t, y0:y0 + side, x0:x0 + side, 0] = k + 1
    depth = rng.integers(0, 2**16, (frames, resolution, resolution, 1), dtype=np.uint16)
    return {
        "video": video,
        "segmentations": seg,
        "depth": depth,
        "metadata": {"video_name": f"{split}_{index}", "num_frames": frames,
                     "num_instances": num_instances},
        "instances": {"mass": rng.random(num_instances).astype(np.float32)},
    }


def make_builder_class(name: str, resolution: int, frames: int, splits: dict[str, int], make_record=record):
    """A ``GeneratorBasedBuilder`` subclass registered under ``name`` (``movi_d`` / ``movi_e``)
    whose records are ``make_record(split, index, frames, resolution)`` (default :func:`record`)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    class _MoviFixture(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version(VERSION)
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"{resolution}x{resolution}")]

        def _info(self):
            r = resolution
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "video": tfds.features.Video(shape=(frames, r, r, 3)),
                "segmentations": tfds.features.Sequence(
                    tfds.features.Image(shape=(r, r, 1), dtype=tf.uint8), length=frames),
                "depth": tfds.features.Sequence(
                    tfds.features.Image(shape=(r, r, 1), dtype=tf.uint16), length=frames),
                "metadata": {"video_name": tfds.features.Text(), "num_frames": tf.int32,
                             "num_instances": tf.uint16},
                "instances": tfds.features.Sequence({"mass": tf.float32}),
            }))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split, n) for split, n in splits.items()}

        def _generate_examples(self, split, n):
            for index in range(n):
                rec = make_record(split, index, frames, resolution)
                rec["instances"] = [{"mass": m} for m in rec["instances"]["mass"]]
                yield f"{split}_{index:06d}", rec

    class_name = "".join(part.capitalize() for part in name.split("_"))  # movi_e -> MoviE
    return type(class_name, (_MoviFixture,), {"__module__": __name__})


def prepare(data_dir: str, name: str, resolution: int, frames: int, splits: dict[str, int],
            make_record=record) -> None:
    """Write ``{data_dir}/{name}/{R}x{R}/1.0.0/`` (dataset_info.json, features.json, tfrecords)."""
    import tensorflow_datasets as tfds

    cls = make_builder_class(name, resolution, frames, splits, make_record)
    builder = cls(data_dir=data_dir, config=f"{resolution}x{resolution}")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--name", default="movi_e", choices=["movi_d", "movi_e"])
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--splits", nargs="+", default=["train=6", "validation=2", "test=2"])
    args = parser.parse_args()
    splits = {k: int(v) for k, v in (s.split("=") for s in args.splits)}
    prepare(args.data_dir, args.name, args.resolution, args.frames, splits)


if __name__ == "__main__":
    main()
