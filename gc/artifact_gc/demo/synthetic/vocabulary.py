"""The names and shapes a synthetic store is made of: steps, pipelines, tags, artifact
kinds (materializer, data type, visualization), and the JSON ZenML stores for pipeline
and step configurations."""

from __future__ import annotations

import json
from typing import Any

from artifact_gc.demo.synthetic.schema import ZENML_VERSION

STEPS: dict[str, tuple[str, ...]] = {
    "load_data": ("raw_data", "data_stats"),
    "clean_data": ("clean_data", "cleaning_report"),
    "split_data": ("train_set", "test_set"),
    "featurize": ("features", "feature_schema"),
    "train_model": ("model", "training_metrics"),
    "evaluate_model": ("evaluation", "confusion_matrix"),
    "export_model": ("model_package", "model_card"),
    "batch_predict": ("predictions", "drift_report"),
}
STEP_NAMES = tuple(STEPS)
PIPELINES = (
    "training_pipeline",
    "feature_pipeline",
    "batch_inference",
    "evaluation_pipeline",
    "data_quality",
)
TAGS = ("production", "baseline", "keep", "experiment", "golden", "reviewed")
COLORS = ("grey", "purple", "red", "green", "yellow", "orange", "lime", "teal", "blue")


def _source(module: str, attribute: str, kind: str) -> str:
    return json.dumps(
        {"module": module, "attribute": attribute, "type": kind}, separators=(",", ":")
    )


#: (artifact type, materializer source, data type source, visualization type)
KINDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "DataArtifact",
        _source("zenml.materializers.pandas_materializer", "PandasMaterializer", "internal"),
        _source("pandas.core.frame", "DataFrame", "distribution_package"),
        "csv",
    ),
    (
        "BaseArtifact",
        _source(
            "zenml.materializers.built_in_materializer", "BuiltInContainerMaterializer", "internal"
        ),
        _source("builtins", "dict", "builtin"),
        "json",
    ),
    (
        "ModelArtifact",
        _source(
            "zenml.materializers.cloudpickle_materializer", "CloudpickleMaterializer", "internal"
        ),
        _source("sklearn.ensemble._forest", "RandomForestClassifier", "distribution_package"),
        "markdown",
    ),
    (
        "DataAnalysisArtifact",
        _source(
            "zenml.materializers.structured_string_materializer",
            "StructuredStringMaterializer",
            "internal",
        ),
        _source("zenml.types", "HTMLString", "internal"),
        "html",
    ),
    (
        "DataArtifact",
        _source("zenml.materializers.built_in_materializer", "BuiltInMaterializer", "internal"),
        _source("builtins", "float", "builtin"),
        "json",
    ),
)
PREEXISTING_KIND = (
    "DataArtifact",
    _source(
        "zenml.artifacts.preexisting_data_materializer", "PreexistingDataMaterializer", "internal"
    ),
    _source("pathlib", "Path", "builtin"),
    "markdown",
)
#: The file each visualization type is written to, inside the version's directory.
VIS_FILE = {"csv": "data.csv", "json": "data.json", "markdown": "card.md", "html": "report.html"}

CLIENT_ENVIRONMENT = json.dumps(
    {
        "environment": "native",
        "os": "linux",
        "python_version": "3.11.7",
        "zenml_version": ZENML_VERSION,
    }
)


def pipeline_configuration(name: str) -> str:
    """A pipeline configuration shaped like ZenML's (compact JSON)."""
    return json.dumps(
        {
            "enable_cache": None,
            "environment": {},
            "secrets": [],
            "execution_mode": "continue_on_failure",
            "settings": {},
            "tags": None,
            "extra": {},
            "model": None,
            "parameters": {},
            "substitutions": {},
            "name": name,
        },
        separators=(",", ":"),
    )


def step_config(step: str, index: int, externals: dict[str, Any]) -> str:
    """A step configuration shaped like ZenML's (compact JSON, as ZenML stores it)."""
    upstream = [STEP_NAMES[index - 1]] if index else []
    return json.dumps(
        {
            "spec": {
                "source": {"module": "pipelines.steps", "attribute": step, "type": "user"},
                "upstream_steps": upstream,
                "inputs": {},
                "invocation_id": step,
                "enable_heartbeat": False,
                "parameter_spec": {},
            },
            "step_config_overrides": {
                "enable_cache": None,
                "parameters": {},
                "settings": {},
                "outputs": {},
                "name": step,
                "caching_parameters": {},
                "external_input_artifacts": externals,
                "model_artifacts_or_metadata": {},
                "client_lazy_loaders": {},
            },
        },
        separators=(",", ":"),
    )


def step_of(artifact: int) -> str:
    """The step that produces artifact number ``artifact``."""
    return STEP_NAMES[artifact % len(STEP_NAMES)]


def artifact_name(artifact: int) -> str:
    """The name of artifact number ``artifact``: one of its step's outputs, numbered."""
    outputs = STEPS[step_of(artifact)]
    return f"{outputs[(artifact // len(STEP_NAMES)) % len(outputs)]}_{artifact}"


def output_name(artifact: int) -> str:
    """The step output name that artifact number ``artifact`` is saved under."""
    return artifact_name(artifact).rsplit("_", 1)[0]
