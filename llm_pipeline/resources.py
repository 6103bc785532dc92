"""Resources: where data and models live, configurable per deployment or per run."""

from pathlib import Path

from dagster import ConfigurableResource, Failure
from pydantic import Field

from llm_pipeline import paths
from llm_pipeline.atomic import recover_dir
from llm_pipeline.errors import UnsafePathError


class StorageResource(ConfigurableResource):
    """Roots for data and model outputs.

    Empty means the environment (`LLM_PIPELINE_DATA_DIR`, `LLM_PIPELINE_MODELS_DIR`) or, failing
    that, the project's `data/` and `models/`. Resolved at run time, so a test or a user can
    switch roots with an environment variable and no code change.
    """

    data_dir: str = Field(default="", description="Root of data outputs; empty = env/default.")
    models_dir: str = Field(default="", description="Root of model outputs; empty = env/default.")

    def data_root(self) -> Path:
        return Path(self.data_dir) if self.data_dir else paths.data_dir()

    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else paths.models_dir()

    def raw(self, corpus: str) -> Path:
        return _checked(paths.raw_dir, corpus, self.data_root())

    # Folder outputs are restored first if a killed writer left a swap half done (only possible
    # where the atomic exchange is unsupported; see llm_pipeline.atomic).
    def documents(self, corpus: str) -> Path:
        folder = _checked(paths.documents_dir, corpus, self.data_root())
        recover_dir(folder)
        return folder

    def cleaned(self, corpus: str) -> Path:
        folder = _checked(paths.cleaned_dir, corpus, self.data_root())
        recover_dir(folder)
        return folder

    def tokens(self, corpus: str) -> Path:
        return _checked(paths.tokens_dir, corpus, self.data_root())


def _checked(folder_of, corpus: str, root: Path) -> Path:
    """The folder, or a step failure whose message is the reason (not a library traceback)."""
    try:
        return folder_of(corpus, root)
    except UnsafePathError as exc:
        raise Failure(description=f"corpus {corpus!r}: {exc}") from None
