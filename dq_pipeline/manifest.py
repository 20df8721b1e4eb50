"""Dataset manifest (``data/<dataset>/dataset.yaml``): loading and validation.

The manifest is a contract (see DESIGN.md). Every error names the manifest file and the key or value
that is wrong, so a user can fix it without reading code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_NAME = "dataset.yaml"
MODALITIES = ("image", "text", "tabular")
SOURCE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ManifestError(ValueError):
    """The dataset manifest (or the dataset folder it describes) is invalid."""


@dataclass(frozen=True)
class DatasetManifest:
    """A validated ``dataset.yaml``; paths are absolute."""

    name: str
    folder: Path
    modality: str
    source: Path
    labels_column: str
    separator: str | None = "|"
    classes: tuple[str, ...] | None = None
    id_column: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    categorical_columns: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def source_format(self) -> str:
        return SOURCE_FORMATS[self.source.suffix.lower()]


def _as_str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ManifestError(f"{path}: '{key}' must be a list of names, got {value!r}")
    booleans = [v for v in value if isinstance(v, bool)]
    if booleans:  # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans
        raise ManifestError(
            f"{path}: '{key}' holds {booleans[0]!r}, which YAML read as a boolean (from yes/no/on/off/"
            "true/false); quote the name, e.g. \"yes\""
        )
    names = tuple(str(v) for v in value)
    for name in names:
        if not name.strip() or name != name.strip():
            raise ManifestError(f"{path}: '{key}' holds {name!r}; names must be non-empty, without "
                                "leading or trailing spaces")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ManifestError(f"{path}: '{key}' lists {duplicates} more than once")
    return names


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping holding the same key twice (PyYAML keeps the last silently)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # unhashable key: let the SafeLoader report it
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(path: Path) -> Any:
    """Parse the manifest; every problem (encoding, syntax, tabs, duplicate keys) is a ManifestError."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not valid UTF-8; save the manifest as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        hint = ""
        if "\t" in problem or "'\\t'" in problem:
            hint = " (YAML does not allow tabs for indentation; indent with spaces)"
        raise ManifestError(f"{path}: not valid YAML{where}: {problem}{hint}") from exc


def load_manifest(folder: str | Path) -> DatasetManifest:
    """Read and validate ``<folder>/dataset.yaml``.

    Checks keys and types and that the source file exists inside the folder. Column existence is
    checked against the source by :func:`dq_pipeline.ingest.load_examples`.
    """
    folder = Path(folder).resolve()
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (every dataset folder needs a {MANIFEST_NAME})")
    name = folder.name
    if not DATASET_NAME_RE.match(name):
        raise ManifestError(
            f"{folder}: dataset folder name {name!r} may only contain letters, digits, '_' and '-'"
        )
    raw = _read_yaml(path)
    if raw is None:
        raise ManifestError(f"{path}: the manifest is empty; it needs at least 'modality', 'source' and "
                            "'labels: {column: ...}'")
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping of keys (modality: ..., source: ...), got "
                            f"{type(raw).__name__} {raw!r:.80}")

    known = {"modality", "source", "labels", "id_column", "text_column", "image_column", "feature_columns",
             "categorical_columns", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(known)}")

    modality = raw.get("modality")
    if modality not in MODALITIES:
        raise ManifestError(f"{path}: 'modality' must be one of {list(MODALITIES)}, got {modality!r}")
    source_rel = raw.get("source")
    if not isinstance(source_rel, str) or not source_rel:
        raise ManifestError(f"{path}: 'source' (the data file, relative to the folder) is required")
    source = (folder / source_rel).resolve()
    if not source.is_relative_to(folder):
        raise ManifestError(f"{path}: 'source' {source_rel!r} leaves the dataset folder {folder}")
    if source.suffix.lower() not in SOURCE_FORMATS:
        raise ManifestError(
            f"{path}: 'source' {source_rel!r} has unsupported format; use one of {sorted(SOURCE_FORMATS)}"
        )
    if source.exists() and not source.is_file():
        raise ManifestError(f"{path}: 'source' {source_rel!r} is not a file")
    if not source.is_file():
        raise ManifestError(f"{path}: 'source' file {source} not found")

    labels = raw.get("labels")
    if not isinstance(labels, dict) or not isinstance(labels.get("column"), str) or not labels["column"]:
        raise ManifestError(f"{path}: 'labels.column' (name of the tags column) is required, e.g. "
                            f"'labels: {{column: labels, separator: \"|\"}}'; got labels: {labels!r}")
    unknown_label_keys = sorted(set(labels) - {"column", "separator", "classes"})
    if unknown_label_keys:
        raise ManifestError(f"{path}: unknown key(s) under 'labels': {unknown_label_keys}")
    separator = labels.get("separator", "|")
    if separator is not None and not isinstance(separator, str):
        raise ManifestError(f"{path}: 'labels.separator' must be a string, got {separator!r}")
    if separator == "":
        raise ManifestError(f"{path}: 'labels.separator' is empty; give the character between tags "
                            "(e.g. \"|\"), or null when each cell holds exactly one tag or a list")
    classes = None
    if labels.get("classes") is not None:
        classes = _as_str_list(labels["classes"], "labels.classes", path)
        if not classes:
            raise ManifestError(f"{path}: 'labels.classes' is empty")
        if separator:
            clashing = [c for c in classes if separator in c]
            if clashing:
                raise ManifestError(
                    f"{path}: 'labels.classes' entry {clashing[0]!r} contains the separator {separator!r}, "
                    "so a cell naming it would be split into other tags; rename the class or choose "
                    "another separator"
                )

    def opt_str(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{path}: '{key}' must be a column name, got {value!r}")
        if value == "":
            raise ManifestError(f"{path}: '{key}' is empty; give a column name or leave the key out")
        return value

    text_column, image_column, id_column = opt_str("text_column"), opt_str("image_column"), opt_str("id_column")
    if modality == "text" and not text_column:
        raise ManifestError(f"{path}: modality 'text' needs 'text_column'")
    if modality == "image" and not image_column:
        raise ManifestError(f"{path}: modality 'image' needs 'image_column'")
    applies = {"text_column": "text", "image_column": "image", "feature_columns": "tabular",
               "categorical_columns": "tabular"}
    for key, only in applies.items():
        if raw.get(key) is not None and modality != only:
            raise ManifestError(f"{path}: '{key}' is only used by modality '{only}', but modality is "
                                f"{modality!r}; remove it or fix 'modality'")
    labels_column = labels["column"]
    for key, column in (("id_column", id_column), ("text_column", text_column), ("image_column", image_column)):
        if column == labels_column:
            raise ManifestError(f"{path}: '{key}' and 'labels.column' both name column {column!r}; the tags "
                                "need a column of their own")
    roles = {labels_column: "the labels column (the model would see the answer)"}
    if id_column:
        roles[id_column] = "the id column (an id is not a feature)"
    feature_columns = None
    if raw.get("feature_columns") is not None:
        feature_columns = _as_str_list(raw["feature_columns"], "feature_columns", path)
        if not feature_columns:
            raise ManifestError(f"{path}: 'feature_columns' is empty; list the feature columns or leave the "
                                "key out to use every column except id and labels")

    categorical_columns: tuple[str, ...] = ()
    if raw.get("categorical_columns") is not None:
        categorical_columns = _as_str_list(raw["categorical_columns"], "categorical_columns", path)
    for key, columns in (("feature_columns", feature_columns or ()), ("categorical_columns", categorical_columns)):
        for column in columns:
            if column in roles:
                raise ManifestError(f"{path}: '{key}' lists {column!r}, which is {roles[column]}; remove it")
    if feature_columns is not None:
        stray = [c for c in categorical_columns if c not in feature_columns]
        if stray:
            raise ManifestError(f"{path}: 'categorical_columns' lists {stray[0]!r}, which is not one of "
                                f"'feature_columns' {list(feature_columns)}")

    return DatasetManifest(
        name=name,
        folder=folder,
        modality=modality,
        source=source,
        labels_column=labels_column,
        separator=separator,
        classes=classes,
        id_column=id_column,
        text_column=text_column,
        image_column=image_column,
        feature_columns=feature_columns,
        categorical_columns=categorical_columns,
        raw=raw,
    )


def discover_datasets(data_dir: str | Path) -> dict[str, Path]:
    """Map dataset name -> folder for every direct subfolder of ``data_dir`` holding a manifest."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return {}
    return {
        p.name: p.resolve()
        for p in sorted(data_dir.iterdir())
        if p.is_dir() and (p / MANIFEST_NAME).is_file() and DATASET_NAME_RE.match(p.name)
    }
