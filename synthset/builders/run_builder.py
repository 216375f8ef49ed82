"""The `datasets` builder base: reads the finished shards of a synthset run, never generates.

Each dataset family (synth_imagenet, synth_imagenet_lt, synth_fewshot) is a subclass whose
BUILDER_CONFIGS are exactly the config names it publishes (`synthset.run.families` holds those names and
the rules for which recipes make each family). For users who want a local Arrow copy,
`Builder(config_name=..., data_dir=<run dir>).download_and_prepare(out, file_format="parquet")` reads
the run's shards through the same Features they were written with; `synthset build` publishes the very
same shard files without rewriting a byte of them."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq

from synthset.errors import RunStateError
from synthset.run.families import config_names
from synthset.run.paths import RunDir
from synthset.run.published import files_of, published_configs, shard_files
from synthset.run.schema import dataset_features


def builder_configs(family: str) -> list[datasets.BuilderConfig]:
    """A family's BUILDER_CONFIGS: exactly the config names `synthset.run.families` says it publishes."""
    return [datasets.BuilderConfig(name=name) for name in config_names(family)]


class RunBuilder(datasets.GeneratorBasedBuilder):
    """Base for the synthset dataset builders; pass the run directory as `data_dir`."""

    CLASS_SET: str | None = "imagenet-1k"
    DESCRIPTION = "Synthetic image-classification data made by synthset."

    def _label_names(self) -> list[str]:
        if self.config.data_dir:
            from synthset.run.classes_table import read_label_names

            return read_label_names(RunDir(Path(self.config.data_dir)))
        from synthset.classes import load_class_set

        return [info.label_name for info in load_class_set(self.class_set_name())]

    def class_set_name(self) -> str:
        return self.CLASS_SET or "imagenet-1k"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.DESCRIPTION, features=dataset_features(self._label_names()))

    def _split_generators(self, dl_manager):
        from synthset.builders.assemble import check_finished
        from synthset.run.lock import read_lock

        if not self.config.data_dir:
            raise RunStateError(f"{type(self).__name__}: pass the run directory as data_dir")
        run = RunDir.planned(self.config.data_dir)
        lock = read_lock(run)
        published = {c.name: c for c in published_configs(lock.recipe)}
        if self.config.name not in published:
            raise RunStateError(f"{run}: the run has no config {self.config.name!r} (it has: {', '.join(published)})")
        config = published[self.config.name]
        names = check_finished(run, lock)
        paths = [str(run.shard_file(f.shard)) for f in files_of(config, shard_files(lock.recipe, names))]
        return [datasets.SplitGenerator(name=config.split, gen_kwargs={"paths": paths})]

    def _generate_examples(self, paths: list[str]):
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield row["sample_id"], row
