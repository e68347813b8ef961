import pytest

from tests.kg.kb import SPARSE, TRIPLES, tiny_encoder, write_kb


@pytest.fixture(scope="session")
def kg_world(tmp_path_factory):
    """A triples-only index of the test KB whose path scorer is a tiny random encoder (sparse-weighted search)."""
    from ragtune.config import Config
    from ragtune.kg.ingest import update_triples

    root = tmp_path_factory.mktemp("kg")
    enc = tiny_encoder(root / "enc")
    cfg = Config().updated(dense={"encoder": str(enc)})
    kb = write_kb(root / "kb.tsv", TRIPLES)
    update_triples(root / "index", [kb], config=cfg, search=SPARSE)
    return {"root": root, "index": root / "index", "kb": kb, "enc": enc, "cfg": cfg}
