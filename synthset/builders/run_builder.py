"""The `datasets` builder base: reads the finished shards of a synthset run, never generates.

Each dataset family (synth_imagenet, synth_imagenet_lt, synth_fewshot) is a subclass whose
BUILDER_CONFIGS are exactly the config names it publishes and whose `check_recipe` says which recipes
make it. `Builder(config_name=..., data_dir=<run dir>).download_and_prepare(out, file_format="parquet")`
reads the run's shards through the same Features the shards were written with; `synthset build` uses
the same builder to write the Hub layout without rewriting a byte of the shards.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq

from synthset.builders.configs import files_of, published_configs, shard_files
from synthset.builders.features import dataset_features
from synthset.errors import SynthsetError

STRATEGIES = ("naive", "lar", "lar_cd", "lar_cd_sd", "augcond")


class RunBuilder(datasets.GeneratorBasedBuilder):
    """Base for the synthset dataset builders; pass the run directory as `data_dir`."""

    CLASS_SET: str | None = "imagenet-1k"
    DESCRIPTION = "Synthetic image-classification data made by synthset."

    @classmethod
    def check_recipe(cls, recipe) -> None:
        """Raise SynthsetError (one line) when the recipe cannot make this dataset."""
        names = {c.name for c in cls.BUILDER_CONFIGS}
        for config in published_configs(recipe):
            if config.name not in names:
                raise SynthsetError(
                    f"configs: {config.name!r} is not a config of {cls.__name__} "
                    f"(it publishes e.g. {', '.join(sorted(names)[:6])}, ...)"
                )

    def _label_names(self) -> list[str]:
        if self.config.data_dir:
            from synthset.classes.table import read_label_names

            return read_label_names(Path(self.config.data_dir))
        from synthset.classes import load_class_set

        return [info.label_name for info in load_class_set(self.class_set_name())]

    def class_set_name(self) -> str:
        return self.CLASS_SET or "imagenet-1k"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.DESCRIPTION, features=dataset_features(self._label_names()))

    def _split_generators(self, dl_manager):
        from synthset.builders.assemble import check_finished
        from synthset.generation.manifest import shard_file
        from synthset.generation.plan import PLAN_FILE
        from synthset.generation.runner import plan_shard_names
        from synthset.lock import read_lock

        if not self.config.data_dir:
            raise SynthsetError(f"{type(self).__name__}: pass the run directory as data_dir")
        run_dir = Path(self.config.data_dir)
        lock = read_lock(run_dir)
        published = {c.name: c for c in published_configs(lock.recipe)}
        if self.config.name not in published:
            raise SynthsetError(
                f"{run_dir}: the run has no config {self.config.name!r} (it has: {', '.join(published)})"
            )
        config = published[self.config.name]
        names = plan_shard_names(pq.ParquetFile(run_dir / PLAN_FILE))
        check_finished(run_dir, lock)
        paths = [str(shard_file(run_dir, f.shard)) for f in files_of(config, shard_files(lock.recipe, names))]
        return [datasets.SplitGenerator(name=config.split, gen_kwargs={"paths": paths})]

    def _generate_examples(self, paths: list[str]):
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield row["sample_id"], row
