"""What the commands print for people (the JSON output is the library's own, unchanged): an identification and
an evaluation report as text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from snakeweb.errors import shell_word
from snakeweb.identification import no_all_clear_reason

if TYPE_CHECKING:
    from snakeweb.identification import Identification


# prediction_source in words, for people (the JSON keeps the schema's terms)
SOURCE_WORDS = {"classifier": "the classifier's top species", "rollup": "rolled up: the species was uncertain",
                "range_filter": "changed by the country check", "venom_rule": "withheld: possibly venomous",
                "abstain": "nothing likely enough to name"}


def print_identification(result: Identification) -> None:
    """An identification (snakeweb.identification) as people read it: the venom banner first, then the answer, where it
    came from, the classifier's top species and the nearest reference images."""
    print("observation: " + ", ".join(result.inputs)
          + (f" (country {result.country}, range {result.range_mode})" if result.country_prior_applied else ""))
    for failure in result.failures:
        print(f"  skipped photo {failure.index + 1} ({failure.name}): {failure.reason}")
    for note in result.notes:
        print(f"  note: {note}")
    flags = {"venomous": "VENOMOUS", "harmless": "harmless", "unknown": "venom status UNKNOWN (treat as possibly venomous)"}
    # level "unknown" is a missing all-clear, not the answer's venom status (it read "VENOM STATUS UNKNOWN" beside a
    # harmless species whose status was known): the reason is said
    lead = {"danger": "DANGER", "caution": "CAUTION", "harmless": "LOW RISK", "unknown": "NO ALL-CLEAR"}[result.venom_level]
    reason = no_all_clear_reason(result) if result.venom_level == "unknown" else ""
    print(f"  {lead}: {result.headline}" + (f"; {reason}, so treat it as possibly venomous" if reason else ""))
    source = SOURCE_WORDS[result.prediction_source]
    if result.prediction_source == "classifier" and result.prediction_rank in ("genus", "family"):  # a fixed rank
        source = f"the classifier's top {result.prediction_rank}"
    if result.prediction_source == "venom_rule" and result.prediction_rank:  # a fixed rank: named, not withheld
        source = "the venom-aware call at this rank"
    print(f"  answer: {result.answer_text}  [{source}; "
          f"{flags[result.venom_status] if result.prediction_rank else 'venom status unknown'}]")
    print("  top species from the classifier" + (" after the country step:" if result.country_prior_applied else ":"))
    for rank, s in enumerate(result.species, 1):
        family = f", {s.family}" if s.family else ""
        print(f"  {rank}. {s.binomial_name} (class {s.class_id}{family})  {s.probability:6.1%}  {flags[s.venom_status]}")
    if result.possibly_venomous:
        named = ", ".join(f"{s.binomial_name} ({s.probability:.0%}, {flags[s.venom_status].split(' (')[0]})"
                          for s in result.possibly_venomous)
        print(f"  possibly venomous candidates (each at its larger probability, before or after the country step): {named}")
    if result.out_of_store:
        print("  NOT A SNAKE IN THIS STORE: the photo is farther from every reference than validation snakes are.")
    elif result.uncertain:
        print("  UNCERTAIN: the candidates above are possibilities, not an identification.")
    print(f"  {result.explanation}")
    if result.neighbours:
        print("  nearest reference images:")
    for n in result.neighbours:
        print(f"    image {n.image_id}  similarity {n.similarity:.4f}  {n.binomial_name or 'unlabelled'}  {n.path}")


def print_evaluation(report: dict, store: str = "STORE") -> None:
    """The evaluate stage's report (snakeweb.evaluation.evaluate) as text: every decision variant's official
    scores, then the answers people get per rank and the venom-critical figures."""
    print(f"evaluate: {report['observations']} {report['split']} observations, {report['head']} head on {report['model']}")
    if report.get("observations_copied_from_training"):
        print(f"note: {report['observations_copied_from_training']} of these {report['split']} observations have a photo that is a "
              "byte-identical copy of a training photo; the head has seen it, so their scores are optimistic (`check` lists them).")
    if report.get("observations_not_compared_for_copies"):
        print(f"note: {report['observations_not_compared_for_copies']} of these {report['split']} observations have photos whose vectors "
              "were imported without the photo's sha256, so they were not checked for copies of training photos.")
    if report.get("observations_not_embedded"):
        print(f"note: {report['observations_not_embedded']} labelled {report['split']} observation(s) are not scored: their photos are "
              f"not embedded yet (ingested after the last embed); run `python -m pipelines build --store {shell_word(store)}` (or embed, "
              "then predict) and evaluate again.")
    if report.get("observations_without_usable_photos"):
        print(f"note: {report['observations_without_usable_photos']} labelled {report['split']} observation(s) are not scored: none "
              "of their photos could be read (see `images` rows with status 'error').")
    chosen = {k: v for k, v in report["chosen_on_validation"].items() if v is not None}
    if "blend_weight" in chosen:  # the linear head's share, which means nothing for other heads; train prints the kNN's
        share = chosen.pop("blend_weight")
        if report.get("head") == "linear+knn":
            chosen["knn_blend_weight"] = round(1.0 - share, 6)
    print("chosen on validation: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items()))
    if report.get("calibration_note"):
        print(f"note: calibration: {report['calibration_note']}")
    if report.get("classes_with_unknown_venom_status"):
        print(f"note: {report['classes_with_unknown_venom_status']} species have venom status unknown; "
              "the metric counts them as venomous, as the venom-aware rule does.")
    print(f"{'variant':<22}{'F1':>8}{'Acc':>8}{'Track1':>8}{'Track2':>8}   PSC % [h>h, h>v, v>h, v>v]")
    for name, s in report["variants"].items():
        print(f"{name:<22}{s['F1 Score']:>8.2f}{s['Accuracy']:>8.2f}{s['Track1 Metric']:>8.2f}{s['Track2 Metric']:>8}   {s['PSC']}")
    flags = report.get("venom_flags") or {}
    if flags.get("promoted_to_venomous"):  # the official figures above and the store's safety flags differ: both said
        print(f"venom flags: the figures above use the species table's own flags, as `score` does; {flags['promoted_to_venomous']} "
              f"class(es) it flags harmless are venomous in this store (front-fanged, from --taxonomy; e.g. "
              f"{', '.join(flags['promoted_examples'])}; {flags['observations_of_promoted_classes']} of these observations). "
              "Under the store's flags:")
        for name, s in flags["variants_under_store_flags"].items():
            print(f"{name:<22}{s['F1 Score']:>8.2f}{s['Accuracy']:>8.2f}{s['Track1 Metric']:>8.2f}{s['Track2 Metric']:>8}   {s['PSC']}")
    # the answers people get (snakeweb.answers.decide with the thresholds chosen on validation), per rank, and the
    # venom-critical figures (snakeweb.rank_metrics)
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    thresholds = report.get("thresholds")
    if thresholds:
        chosen = ", ".join(f"{r} " + ("never" if thresholds.get(r) is None else f"{thresholds[r]:.3f}") for r in ("species", "genus", "family"))
        weight = f"; answer venom weight {thresholds['venom_weight']:g}" if thresholds.get("venom_weight") else ""
        print(f"answers: thresholds chosen on validation for {thresholds['target_precision']:.0%} precision: {chosen}{weight}")
    if report.get("answers_note"):
        print(f"note: {report['answers_note']}")
    for variant, answers in (report.get("answers") or {}).items():
        summary, accuracy, venom = answers["summary"], answers["rank_accuracy"], answers["venom_critical"]
        print(f"answers {variant}: {answers['observations']} observations"
              + (f" ({answers['outside_head']} of species outside the head left out)" if answers["outside_head"] else ""))
        print(f"  {'rank':<10}{'answered':>10}{'share':>9}{'correct':>9}{'top-1 if forced':>17}")
        for rank, figures in summary["ranks"].items():
            forced = pct(accuracy[rank]["accuracy"]) if rank in accuracy else ""
            print(f"  {rank:<10}{figures['answered']:>10}{pct(figures['coverage']):>9}{pct(figures['accuracy']):>9}{forced:>17}")
        both, reliability = summary["species_or_genus"], answers["reliability"]
        print(f"  species or genus: {pct(both['coverage'])} of photos, {pct(both['precision'])} correct at the rank answered; ECE top-1 "
              f"{pct(reliability['species']['ece'])}, p(venomous) {pct(reliability['p_venomous']['ece'])}")
        print(f"  venom-critical: of {venom['venomous_observations']} venomous, {venom['answered_harmless']} "
              f"({pct(venom['answered_harmless_share'])}) answered harmless, {venom['low_p_venomous']} "
              f"({pct(venom['low_p_venomous_share'])}) with p(venomous) < 0.5; of {venom['harmless_observations']} harmless, "
              f"{venom['answered_venomous']} ({pct(venom['answered_venomous_share'])}) answered venomous")
