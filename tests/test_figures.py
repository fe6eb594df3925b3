"""benchmarks/figures.py renders results JSON lines into the figures page and the README's targets table."""

import json

from benchmarks.figures import BEGIN, END, main

ROWS = [
    {"name": "machine", "value": 2.0, "unit": "cpus", "cpu": "x86_64"},
    {"name": "embed_cpu_default", "value": 15.2, "unit": "img/s", "baseline": 7.1, "ratio": 2.14, "target": ">= 2x",
     "images": 64, "how": "openvino | throughput"},
    {"name": "identify_p50_default", "value": 81.0, "unit": "ms", "baseline": 133.0, "ratio": 1.64, "target": "<= 70 ms"},
    {"name": "a_name_nobody_knows_yet", "value": 3, "unit": "", "long_side": [375, 750], "seed": None},
]


def test_renders_rows_with_machine_file_and_targets(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "cpu_run.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "not json\n", encoding="utf-8")
    (results / "gpu.jsonl").write_text(json.dumps({"name": "device", "value": "Some GPU", "unit": "", "torch": "2.x"}) + "\n"
                                       + json.dumps({"name": "gpu_embed", "value": 5489.2, "unit": "img/s", "date": "2026-12-01"}) + "\n")
    doc = tmp_path / "figures.md"
    doc.write_text(f"# Figures\n\nhand-written above\n\n{BEGIN}\nold\n{END}\n\n## Hand-written\n\nkept below\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{BEGIN}\n{END}\n\noutro\n", encoding="utf-8")

    assert main(["--results", str(results), "--doc", str(doc), "--readme", str(readme)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert "hand-written above" in text and "kept below" in text and "\nold\n" not in text
    assert "### x86_64, 2 cpus: `cpu_run.jsonl`," in text and "Machine: 2 cpus (cpu x86_64)." in text
    assert "1 line(s) of the file were not JSON objects" in text
    assert ("| `embed_cpu_default` | 15.2 img/s | 7.1 img/s | 2.14x | >= 2x (yes) | images 64 · how openvino \\| throughput "
            "| x86_64, 2 cpus |") in text
    assert "| `identify_p50_default` | 81 ms | 133 ms | 1.64x | <= 70 ms (no) |  | x86_64, 2 cpus |" in text
    assert "| `a_name_nobody_knows_yet` | 3 |  |  |  | long_side [375, 750] · seed none | x86_64, 2 cpus |" in text
    assert "### Some GPU: `gpu.jsonl`, 2026-12-01" in text and "| `gpu_embed` | 5,489.2 img/s |" in text
    assert "`machine`" not in text and "`device`" not in text  # they head their tables instead

    readme_text = readme.read_text(encoding="utf-8")
    assert readme_text.startswith("intro\n") and readme_text.endswith("\noutro\n")
    targets = [line for line in readme_text.splitlines() if line.startswith("| `")]
    assert targets == ["| `embed_cpu_default` | 15.2 img/s | 7.1 img/s | 2.14x | >= 2x (yes) | x86_64, 2 cpus, `cpu_run.jsonl` |",
                       "| `identify_p50_default` | 81 ms | 133 ms | 1.64x | <= 70 ms (no) | x86_64, 2 cpus, `cpu_run.jsonl` |"]

    main(["--results", str(results), "--doc", str(doc), "--readme", str(readme)])  # idempotent
    assert doc.read_text(encoding="utf-8") == text


def test_a_results_file_gets_its_own_table_where_the_readme_asks(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [{"name": "machine", "value": 2, "unit": "cpus", "cpu": "x86_64", "date": "2026-12-01"},
            {"name": "stage_train_s", "value": 55.2, "unit": "s", "peak_gb": 2.31, "exit_code": 0},
            {"name": "stages_total_s", "value": 400.0, "unit": "s", "target": "<= 360 s"}]
    (results / "scale.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (results / "other.jsonl").write_text(json.dumps({"name": "x", "value": 1, "unit": "s"}) + "\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n\n## At scale\n\n<!-- BEGIN figures.py: scale.jsonl -->\nold\n"
                      "<!-- END figures.py: scale.jsonl -->\n\nafter\n", encoding="utf-8")
    main(["--results", str(results), "--doc", str(tmp_path / "figures.md"), "--readme", str(readme)])
    text = readme.read_text(encoding="utf-8")
    block = text[text.index("<!-- BEGIN figures.py: scale.jsonl -->"):text.index("<!-- END figures.py: scale.jsonl -->")]
    assert "Measured on x86_64, 2 cpus, 2026-12-01 (`benchmarks/results/scale.jsonl`)." in block and "\nold\n" not in block
    assert "| `stage_train_s` | 55.2 s | 2.31 GB |  |" in block
    assert "| `stages_total_s` | 400 s |  | <= 360 s (no) |" in block
    assert "`x`" not in block and text.endswith("\nafter\n")  # other files stay out; the rest of the README stays
    targets = text[text.index(BEGIN):text.index(END)]
    assert "stages_total_s" not in targets  # a file with its own table is not repeated in the targets table
    assert "stages_total_s" in (tmp_path / "figures.md").read_text(encoding="utf-8")  # the figures page keeps it


def test_a_results_file_can_have_its_own_table_on_the_figures_page_instead(tmp_path):
    # the README carried a 45-row SnakeCLEF-scale table: it moved to docs/figures.md, still generated, still kept
    # out of the README's targets table
    results = tmp_path / "results"
    results.mkdir()
    rows = [{"name": "machine", "value": 2, "unit": "cpus", "cpu": "x86_64", "date": "2026-12-01"},
            {"name": "stages_total_s", "value": 300.0, "unit": "s", "target": "<= 360 s"}]
    (results / "scale.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    readme, doc = tmp_path / "README.md", tmp_path / "figures.md"
    readme.write_text(f"{BEGIN}\n{END}\n", encoding="utf-8")
    doc.write_text("## At scale\n\n<!-- BEGIN figures.py: scale.jsonl -->\nold\n<!-- END figures.py: scale.jsonl -->\n\nhand\n",
                   encoding="utf-8")
    main(["--results", str(results), "--doc", str(doc), "--readme", str(readme)])
    text = doc.read_text(encoding="utf-8")
    block = text[text.index("<!-- BEGIN figures.py: scale.jsonl -->"):text.index("<!-- END figures.py: scale.jsonl -->")]
    assert "| `stages_total_s` | 300 s |  | <= 360 s (yes) |" in block and "\nold\n" not in block
    assert "\nhand\n" in text and BEGIN in text  # the hand-written part stays; the generated part is added after it
    assert "stages_total_s" not in readme.read_text(encoding="utf-8")
