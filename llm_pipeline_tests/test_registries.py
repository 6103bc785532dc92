"""Each extension point has one registry, and the lists elsewhere are read from it."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from types import SimpleNamespace

import pytest

from llm_pipeline.lm.export.formats import EXPORT_FORMATS, ExportFormat, all_dtypes
from llm_pipeline.text.filters.basic import DocumentFilter, parameter
from llm_pipeline.text.filters.profiles import _PROFILES
from llm_pipeline.text.filters.registry import (
    FILTERS,
    RegisteredFilter,
    filter_settings,
    settings_fields,
    switch_keys,
    threshold_keys,
)


def test_run_config_check_and_export_registry_import_no_torch() -> None:
    code = (
        "import sys, llm_pipeline.run_config, llm_pipeline.lm.export.formats, llm_pipeline.cli;"
        "print(sorted(m for m in ('torch', 'gguf', 'dagster') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _export_parser() -> argparse.ArgumentParser:
    from llm_pipeline.cli.export import add_export_parser

    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers())
    return parser


def _choices(parser: argparse.ArgumentParser, flag: str) -> tuple:
    export = parser._subparsers._group_actions[0].choices["export"]  # type: ignore[union-attr]
    return tuple(next(a for a in export._actions if flag in a.option_strings).choices)


def test_cli_and_settings_read_the_export_formats(monkeypatch) -> None:
    import llm_pipeline.cli.export as cli_export

    onnx = ExportFormat("onnx", "ONNX file", ("f32", "int8"), "f32", "weights", "a folder", "x:y")
    formats = {**EXPORT_FORMATS, "onnx": onnx}
    monkeypatch.setattr(cli_export, "EXPORT_FORMATS", formats)
    monkeypatch.setattr(cli_export, "all_dtypes", lambda: all_dtypes(formats))
    parser = _export_parser()
    assert _choices(parser, "--format") == ("hf", "gguf", "onnx")
    assert _choices(parser, "--dtype") == ("f32", "f16", "bf16", "q8_0", "int8")
    args = parser.parse_args(["export", "--corpus", "c", "--format", "onnx", "--out", "o"])
    assert args.format == "onnx"


def test_export_settings_come_from_the_registry() -> None:
    from llm_pipeline.lm.export.settings import EXPORTED_MODEL

    specs = {spec.name: spec for spec in EXPORTED_MODEL.specs}
    assert specs["formats"].default == list(EXPORT_FORMATS)
    for fmt in EXPORT_FORMATS.values():
        spec = specs[f"{fmt.name}_dtype"]
        assert (spec.default, tuple(spec.choices)) == (fmt.default_dtype, fmt.dtypes)


def test_stages_everywhere_are_the_asset_graph() -> None:
    from llm_pipeline.asset_graph import stage_order as order_of
    from llm_pipeline.asset_graph import stage_settings, upstream
    from llm_pipeline.cli.overview import on_request_stages, pipeline_stages
    from llm_pipeline.definitions import defs
    from llm_pipeline.stage_assets import ASSETS

    def stage_order(assets=ASSETS):
        return order_of(assets)

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(stage_order()) == keys == {a.key.to_user_string() for a in ASSETS}
    assert (*pipeline_stages(), *on_request_stages()) == stage_order()
    assert on_request_stages() == ("exported_model",)
    for name, inputs in upstream(ASSETS).items():
        assert set(inputs) == {k.to_user_string() for k in graph.get(name_key(name)).parent_keys}
        assert all(stage_order().index(i) < stage_order().index(name) for i in inputs)
    # The run-config check knows exactly these stages, in this order.
    assert tuple(stage_settings(ASSETS)) == stage_order()


def name_key(name: str):
    from dagster import AssetKey

    return AssetKey(name)


def test_stage_order_follows_deps_not_listing_order() -> None:
    from llm_pipeline.asset_graph import stage_order
    from llm_pipeline.stage_assets import ASSETS

    assert stage_order(tuple(reversed(ASSETS)))[:5] == stage_order(ASSETS)[:5]


@dataclasses.dataclass(frozen=True)
class _ShoutingFilter(DocumentFilter):
    max_upper_fraction: float = parameter(
        "Drop documents that are mostly upper case.", ge=0.0, le=1.0, default=0.5
    )
    name: str = "shouting"

    def filter(self, text: str) -> tuple[bool, str | None]:
        upper = sum(c.isupper() for c in text) / max(1, len(text))
        return (True, None) if upper <= self.max_upper_fraction else (False, self.name)


def test_filter_settings_keys_and_order_come_from_the_registry() -> None:
    from llm_pipeline.text.filters.cleaning_config import CleaningConfig
    from llm_pipeline.text.settings import PROFILE_KEYS

    assert (*threshold_keys(), *switch_keys(), "passage_dedup") == PROFILE_KEYS
    config = CleaningConfig()
    assert [f.name for f in config.filters()] == [
        e.name for e in FILTERS if e.section is None or getattr(config, e.name)
    ]
    fields = {f.name for f in dataclasses.fields(CleaningConfig)}
    assert set(threshold_keys()) | set(switch_keys()) <= fields
    # One registry line makes a new filter's threshold a settings key, and a profile's data.
    extended = (*FILTERS, RegisteredFilter(_ShoutingFilter))
    assert threshold_keys(extended)[-1] == "max_upper_fraction"
    web = {k: v for k, v in _PROFILES["web"].items() if k != "passage_dedup"}
    flat = filter_settings({**web, "shouting": {"max_upper_fraction": 0.1}}, extended)
    rule = extended[-1].build(SimpleNamespace(**flat))
    assert rule == _ShoutingFilter(0.1) and rule.filter("HELLO there") == (False, "shouting")
    # A threshold with a default needs no profile entry, and is a described, bounded setting.
    assert filter_settings(web, extended)["max_upper_fraction"] == 0.5
    annotation, field = settings_fields(extended)["max_upper_fraction"]
    assert annotation == float | None and field.default is None
    assert field.description == "Drop documents that are mostly upper case."
    assert settings_fields()["min_chars"][1].description == "Drop shorter documents."
    # ... while a threshold without one must be named by the profile.
    with pytest.raises(ValueError, match="min_chars"):
        filter_settings({k: v for k, v in web.items() if k != "min_chars"}, extended)
