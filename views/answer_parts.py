"""The Identify page's parts that only lay out an `Identification` (snakeweb.identification): the venom banner,
the answer's title and the candidate tables. Apart from the page so that they can be drawn and tested alone."""

import pandas as pd
import streamlit as st

from snakeweb.identification import DANGER_AT, no_all_clear_reason
from views.common import VENOM_LABELS


def venom_banner(result) -> None:
    """One coloured line a first responder reads in a second, and under it every possibly venomous species at 5% or
    more (`possibly_venomous`: wherever it ranks, before or after the country step), whatever the level. Unknown
    venom status counts as possibly venomous, and green needs both a low probability and an answer known to be
    harmless."""
    candidates = ""
    for label, status in (("Venomous candidates", "venomous"), ("Venom status unknown", "unknown")):
        named = [f"{s.binomial_name} ({s.probability:.0%})" for s in result.possibly_venomous if s.venom_status == status]
        if named:
            candidates += f"  \n{label}: {', '.join(named)}."
    if result.venom_level == "danger":
        if result.p_venomous >= DANGER_AT:
            text = f"**☠️ {result.headline} — keep away, treat as dangerous.**"
        else:  # the mass is mostly on species nobody recorded a venom status for
            text = f"**☠️ Possibly venomous — keep away, treat as dangerous.** {result.headline}"
        st.error(text + candidates)
    elif result.venom_level == "caution":
        st.warning(f"**⚠️ {result.headline} — venomous not ruled out: keep your distance.**" + candidates)
    elif result.venom_level == "harmless":
        st.success(f"**✅ {result.headline} — the answer is a harmless snake. Still, do not handle it.**" + candidates)
    else:  # low venomous mass, but not enough for an all-clear (see snakeweb.identification.venom_level): never green
        reason = no_all_clear_reason(result)  # why, so a known-harmless answer does not read as of unknown status
        st.warning(f"**❓ {result.headline} — not enough to call it harmless: treat as possibly venomous.**"
                   + (f"  \nNo all-clear: {reason}." if reason else "") + candidates)


def answer_title(result) -> str:
    """The answer at its rank, from the result's fields only (the wording of the sentence is answer_text's)."""
    family = f" ({result.prediction_family})" if result.prediction_family and result.prediction_rank != "family" else ""
    venom = f" · {VENOM_LABELS[result.venom_status]}"
    if result.prediction_rank in ("genus", "family") and result.venom_status == "unknown":
        venom = " · ❓ not all its species are harmless"  # a taxon's "unknown" is mostly a mix of venomous and harmless
    if result.prediction_rank == "species":
        return f"*{result.prediction}*{family} · {result.prediction_score:.0%}{venom}"
    if result.prediction_rank == "genus":
        return f"Genus *{result.prediction}*{family}: species uncertain{venom}"
    if result.prediction_rank == "family":
        return f"Family {result.prediction}: genus and species uncertain{venom}"
    return "Unknown snake"


def candidates_table(candidates) -> pd.DataFrame:
    # a static table: drawn at once, unlike the interactive grid (identify is the page people wait on)
    return pd.DataFrame([{"species": s.binomial_name, "family": s.family or "—", "probability": f"{s.probability:.1%}",
                          "venom status": VENOM_LABELS[s.venom_status]} for s in candidates]).set_index("species")
