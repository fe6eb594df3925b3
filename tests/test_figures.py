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
