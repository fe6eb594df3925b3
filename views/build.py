"""Build: make a store from an image folder with live progress, or open an existing store."""

import os
from pathlib import Path

import streamlit as st

from snakeweb.build_job import BuildJob, build_command
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.models import AUTO_OFFLINE_MODEL, REGISTRY
from snakeweb.options import HEAD_KINDS, TrainConfig
from snakeweb.store import Store
from snakeweb.taxonomy import TAXONOMY_ENV
from views.common import current_store

SHOWN_LINES = 15  # enough to follow a build and to see the error that ended it


def show_job(job: BuildJob, target: str) -> None:
    """The job's latest lines in a status box, with a Cancel button while it runs."""
    if job.running:
        with st.status(f"Building `{target}`…", expanded=True):
            st.code("\n".join(job.tail(SHOWN_LINES)) or "starting…")
            if st.button("Cancel build", key="cancel_build"):
                job.cancel()
                st.rerun(scope="app")  # a full run: shows the cancelled job and stops the auto refresh
        return
    code = job.returncode
    if code == 0:
        label, state = "Build finished", "complete"
    elif job.cancelled:
        label, state = "Build cancelled", "error"
    else:
        label, state = f"Build failed (exit {code}); the last lines below say why", "error"
    with st.status(label, state=state, expanded=True):
        st.code("\n".join(job.tail(SHOWN_LINES)) or "(no output)")


def build_progress() -> None:
    """Follow the background build, if any. While it runs, the box is a fragment rerun every second, so a browser
    sees live progress without a click and without rerunning (and re-querying) the whole page."""
    job: BuildJob | None = st.session_state.get("build_job")
    if job is None:
        return
    target = st.session_state["build_target"]

    def progress() -> None:
        if job.done and st.session_state.get("build_reported") is not job:
            # first run to see it finished: record the outcome once, then rerun the whole app so the sidebar and
            # the sections below show the new store, and the fragment is redefined without its 1 s refresh
            st.session_state["build_reported"] = job
            if job.returncode == 0:
                st.session_state["store_root"] = target
            st.rerun(scope="app")
        show_job(job, target)

    st.fragment(progress, run_every=1.0 if job.running else None)()


store = current_store()
st.title("Build a store")
if not store.exists():
    st.info(f"There is no store at `{store.root}` yet. Build one below, or open an existing one. "
            f"From a terminal: `python -m pipelines build --store {shell_word(store.root)} --images PATH/TO/PHOTOS`.")

if st.session_state.get("hosted"):
    st.info("This dashboard is hosted with logins: stores are built by the operator "
            "(`python -m pipelines build`, or set SNAKEWEB_ALLOW_BUILD=1).")
else:
    source = st.radio("Photos from", ["an image folder", "SnakeCLEF metadata CSVs"], horizontal=True)
    with st.form("build"):
        if source == "an image folder":
            images = st.text_input("Image folder (one subfolder of photos per species)")
            metadata, image_root = [], ""
            remove_gone = st.checkbox("Remove photos gone from the folder since the last build (reviews are kept)",
                                      help="Without it, photos moved, renamed or deleted stay in the store and are named in "
                                           "the build's output; --remove-gone on the command line.")
        else:
            images, remove_gone = "", False
            metadata = [p.strip() for p in st.text_area("Metadata CSV paths, one per line").splitlines() if p.strip()]
            image_root = st.text_input("Image root (the folder image_path is relative to)")
        species = st.text_input("Species table CSV(s) (optional: class_id, binomial_name, MIVS, e.g. class_list.csv; "
                                "several separated by ;)")
        country_table = st.text_input("Species x country CSV (optional, e.g. Species_Relevance.csv)")
        target = st.text_input("Store directory", str(store.root))
        # below the store directory, not beside the species table: tests/test_app.py finds the inputs above by position
        taxonomy = st.text_input("Taxonomy CSV (optional: family, genus, species, e.g. serpentes.csv; gives every class its family)",
                                 os.environ.get(TAXONOMY_ENV, ""))
        left, middle, right = st.columns(3)
        model = left.selectbox("Model", ["auto", AUTO_OFFLINE_MODEL, *REGISTRY],
                               help="auto: hub DINOv2-B when reachable, else the best offline backbone (EfficientNet-Lite0 + Lite1 + Lite2)")
        features = middle.selectbox("Features", ["model default", "cls", "cls+mean"], help="cls / cls+mean apply to ViTs only")
        head = right.selectbox("Head", list(HEAD_KINDS), index=HEAD_KINDS.index(TrainConfig.kind))
        start = st.form_submit_button("Build", type="primary")
    if start:
        missing = [p for p in metadata if not Path(p).is_file()]
        running = st.session_state.get("build_job")
        if running is not None and running.running:
            st.warning("A build is already running: wait for it to finish, or cancel it below, before starting another.")
        elif not target.strip():  # Path("") is the folder the dashboard runs in
            st.error("Give a store directory.")
        elif source == "an image folder" and (not images or not Path(images).is_dir()):
            st.error("Give an existing image folder.")
        elif source != "an image folder" and (not metadata or missing or not Path(image_root or "").is_dir()):
            st.error("Give existing metadata CSV files and an existing image root"
                     + (f" (not found: {', '.join(missing)})" if missing else "") + ".")
        else:
            tables = [p.strip() for p in species.split(";") if p.strip()] if all(
                Path(p.strip()).is_file() for p in species.split(";") if p.strip()) else ([species] if species else [])
            command = build_command(target, images or None, tables or None, model, None if features == "model default" else features,
                                    head, country_table or None,
                                    metadata, image_root or None, taxonomy.strip() or None, remove_gone)
            # started in the background: this script run returns at once and the progress box below follows the job
            # the child would read SNAKEWEB_TAXONOMY itself: a field the user emptied means no taxonomy
            st.session_state["build_job"] = BuildJob(command, env={k: v for k, v in os.environ.items() if k != TAXONOMY_ENV})
            st.session_state["build_target"] = target
    build_progress()

    st.subheader("Open an existing store")
    chosen = st.text_input("Store directory to open", str(store.root), key="open_store")
    if st.button("Open"):
        try:
            Store(chosen).require()  # the command line's sentences: a file given for the folder, no store there
        except SnakewebError as exc:
            st.error(str(exc))
        else:
            st.session_state["store_root"] = chosen
            st.rerun()

job = st.session_state.get("build_job")
if store.exists() and job is not None and job.running and Store(st.session_state["build_target"]).root.resolve() == store.root.resolve():
    # the build is rewriting this very store: reading it now could see half-written tables
    st.info("A build is writing this store; its integrity and counts show here when the build ends.")
elif store.exists():
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
