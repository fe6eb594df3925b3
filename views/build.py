"""Build: make a store from an image folder with live progress, or open an existing store."""

from pathlib import Path

import streamlit as st

from snakeweb.build_job import build_command, run_streaming
from snakeweb.heads import HEAD_KINDS, TrainConfig
from snakeweb.models import AUTO_OFFLINE_MODEL, REGISTRY
from snakeweb.store import Store
from views.common import current_store

store = current_store()
st.title("Build a store")
if not store.exists():
    st.info(f"There is no store at `{store.root}` yet. Build one below, or open an existing one. "
            f"From a terminal: `python -m pipelines build --store {store.root} --images PATH/TO/PHOTOS`.")

if st.session_state.get("hosted"):
    st.info("This dashboard is hosted with logins: stores are built by the operator "
            "(`python -m pipelines build`, or set SNAKEWEB_ALLOW_BUILD=1).")
else:
    source = st.radio("Photos from", ["an image folder", "SnakeCLEF metadata CSVs"], horizontal=True)
    with st.form("build"):
        if source == "an image folder":
            images = st.text_input("Image folder (one subfolder of photos per species)")
            metadata, image_root = [], ""
        else:
            images = ""
            metadata = [p.strip() for p in st.text_area("Metadata CSV paths, one per line").splitlines() if p.strip()]
            image_root = st.text_input("Image root (the folder image_path is relative to)")
        species = st.text_input("Species table CSV (optional: class_id, binomial_name, MIVS, e.g. class_list.csv)")
        country_table = st.text_input("Species x country CSV (optional, e.g. Species_Relevance.csv)")
        target = st.text_input("Store directory", str(store.root))
        left, middle, right = st.columns(3)
        model = left.selectbox("Model", ["auto", AUTO_OFFLINE_MODEL, *REGISTRY],
                               help="auto: hub DINOv2-B when reachable, else the best offline backbone (EfficientNet-Lite0 + Lite1 + Lite2)")
        features = middle.selectbox("Features", ["model default", "cls", "cls+mean"], help="cls / cls+mean apply to ViTs only")
        head = right.selectbox("Head", list(HEAD_KINDS), index=HEAD_KINDS.index(TrainConfig.kind))
        start = st.form_submit_button("Build", type="primary")
    if start:
        missing = [p for p in metadata if not Path(p).is_file()]
        if source == "an image folder" and (not images or not Path(images).is_dir()):
            st.error("Give an existing image folder.")
        elif source != "an image folder" and (not metadata or missing or not Path(image_root or "").is_dir()):
            st.error("Give existing metadata CSV files and an existing image root"
                     + (f" (not found: {', '.join(missing)})" if missing else "") + ".")
        else:
            lines: list[str] = []
            with st.status("Building…", expanded=True) as status:
                log = st.empty()

                def show(line: str) -> None:
                    lines.append(line)
                    log.code("\n".join(lines[-15:]))

                command = build_command(target, images or None, species or None, model, None if features == "model default" else features,
                                        head, country_table or None,
                                        metadata, image_root or None)
                code = run_streaming(command, show)
                if code == 0:
                    status.update(label="Build finished", state="complete")
                    st.session_state["store_root"] = target
                else:
                    status.update(label=f"Build failed (exit {code}); the last lines above say why", state="error")

    st.subheader("Open an existing store")
    chosen = st.text_input("Store directory to open", str(store.root), key="open_store")
    if st.button("Open"):
        if Store(chosen).exists():
            st.session_state["store_root"] = chosen
            st.rerun()
        else:
            st.error(f"No store at {chosen}.")

if store.exists():
    from snakeweb.integrity import check_store

    st.subheader("Integrity")
    for verdict in check_store(store):
        (st.success if verdict.ok else st.error)(f"{verdict.name}: {verdict.detail}")
    rejected = store.query("SELECT path, error FROM images WHERE status = 'error' ORDER BY path")
    counts = store.query("SELECT status, count(*) AS images FROM images GROUP BY status ORDER BY status")
    st.subheader("This store")
    st.dataframe(counts, hide_index=True)
    if not rejected.empty:
        st.write(f"{len(rejected)} file(s) could not be used:")
        st.dataframe(rejected, hide_index=True)
