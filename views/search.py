"""Search: nearest images to an upload or to a store image, filtered by species, venom status, country."""

import streamlit as st

from snakeweb.search import filter_ids, search_images, stored_vector
from views.common import catalogue, current_store, identifier, image_grid, thumbnail

store = current_store()
st.title("Search similar images")
model = identifier(store)  # a SnakewebError here is shown as a sentence by app.py
images = catalogue(store)

by = st.radio("Search by", ["a store image", "an upload"], horizontal=True,
              index=0 if "search_image_id" in st.session_state else 1)
species_names = images.dropna(subset=["class_id"]).drop_duplicates("class_id").set_index("class_id")["binomial_name"].sort_values()
with st.expander("Filters", expanded=False):
    chosen = st.multiselect("Species", species_names.index.tolist(), format_func=lambda c: species_names[c])
    venom = st.selectbox("Venom status", ["any", "venomous only", "harmless only", "unknown only"])
    countries = st.multiselect("Country", sorted(images["country_code"].dropna().unique().tolist()))
k = st.slider("Results", 4, 48, 12, 4)
allowed = filter_ids(images, chosen, None if venom == "any" else venom.removesuffix(" only"), countries)

exclude: set[int] = set()
if by == "a store image":
    default = int(st.session_state.get("search_image_id", images.index[0]))
    image_id = int(st.number_input("Image id", min_value=0, value=default, step=1))
    if image_id not in images.index:
        st.error(f"Image {image_id} is not in this store (or could not be read when it was built).")
        st.stop()
    query_row = images.loc[image_id]
    st.image(thumbnail(query_row["path"]), caption=f"image {image_id}: {query_row['binomial_name'] or 'unlabelled'}", width=320)
    query = stored_vector(store, image_id)
    exclude = {image_id}
else:
    upload = st.file_uploader("Photo")
    if upload is None:
        st.info("Upload a photo to find similar ones.")
        st.stop()
    _, vectors, failures, _ = model.embed([(upload.name, upload.getvalue())])
    if failures:
        st.error(f"{upload.name}: {failures[0].reason}")
        st.stop()
    query = vectors
results = search_images(model.index, images, query, k, allowed, exclude)
st.caption(f"{len(results)} result(s)" + (f" among {len(allowed)} images passing the filters" if allowed is not None else ""))
image_grid(results, key="search", search_button=True)
