"""Where an answer came from: the snakeweb version, the model, the head and the store that made it, and the
decision settings. Every output that can be filed (identify's JSON, the answers export, the review export)
carries the same dictionary, so two answers' origins can be told apart."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

from snakeweb.digests import sha256_file
from snakeweb.store import Store


@cache
def snakeweb_version() -> str:
    """The installed snakeweb's version, else the source tree's (pyproject.toml), else "unknown"."""
    try:
        return metadata.version("snakeweb")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"] if pyproject.is_file() else "unknown"


def file_id(path: Path) -> str | None:
    """The first 16 hex digits of a file's sha256 (the head id): it changes whenever a head is retrained."""
    return sha256_file(path)[:16] if path.is_file() else None


def store_facts(store: Store) -> dict:
    """What a store says about itself for provenance (model, feature kind, store id), read once: a loaded
    model must go on answering, with its provenance, while a rebuild holds the store's file."""
    model = store.get_meta("model") or {}
    return {"model_fingerprint": model.get("fingerprint"), "model_name": (model.get("config") or {}).get("name"),
            "feature_kind": store.get_meta("feature_kind"), "store_id": store.get_meta("store_id")}


def provenance(facts: dict, head, head_id: str | None, decision: dict) -> dict:
    """The provenance block of the output schemas (snakeweb/schemas/output.schema.json): `facts` from
    `store_facts`, `head` a loaded heads.Head, `decision` the settings that turned its probabilities into the
    answer (`decision_settings`)."""
    return {"snakeweb_version": snakeweb_version(), **facts, "head_id": head_id, "head_kind": head.kind, "decision": decision}


def decision_settings(head, thresholds, rank: str | None, range_mode: str, country_table: str | None, range_records: int,
                      aggregation: str, **extra) -> dict:
    """The decision block of the provenance: everything between the head's probabilities and the answer."""
    from snakeweb.answers import RANKS, answer_venom_weight

    return {
        "rank": rank or "auto", "thresholds": None if thresholds is None else {r: thresholds.of(r) for r in RANKS},
        "target_precision": None if thresholds is None else thresholds.target_precision,
        "venom_weight": answer_venom_weight(thresholds, head.venom_weight),
        "venom_rule": True, "range_mode": range_mode, "country_table": country_table, "range_records": range_records,
        "aggregation": aggregation, "temperature": head.temperature, **extra,
    }
