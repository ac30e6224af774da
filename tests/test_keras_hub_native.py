"""A saved encoder is a standard keras-hub preset: in a fresh process that never imports
tf_esimcse, `BertBackbone.from_preset` and `TextEmbedder.from_preset` load it and the embedder
pools as we do (cls for `cls_before_pooler`, mean for `avg`), up to keras-hub's tanh GELU."""
import json
import subprocess
import sys

import numpy as np
import pytest

from test_case import TINY_SENTENCES, tiny_encoder, write_tiny_model_dir
from tf_esimcse.models.sentence_encoder import SentenceEncoder

SENTENCES = TINY_SENTENCES + ["the café is naïve", ""]  # accents must survive keras-hub's tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny_hf"))


@pytest.mark.large
@pytest.mark.parametrize("pooler,mode", [("cls_before_pooler", "cls"), ("avg", "mean")])
def test_keras_hub_text_embedder_loads_a_saved_encoder(model_dir, tmp_path, pooler, mode):
    encoder = tiny_encoder(model_dir, pooler_type=pooler)
    encoder.save_pretrained(tmp_path / "saved")
    ours = encoder.encode(SENTENCES, verbose=0)
    (tmp_path / "sentences.json").write_text(json.dumps(SENTENCES))
    code = f"""
import json, sys, numpy as np, keras_hub
sentences = json.load(open({str(tmp_path / 'sentences.json')!r}))
backbone = keras_hub.models.BertBackbone.from_preset({str(tmp_path / 'saved')!r})
embedder = keras_hub.models.TextEmbedder.from_preset({str(tmp_path / 'saved')!r})
out = np.asarray(embedder.predict(sentences, verbose=0))
np.save({str(tmp_path / 'theirs.npy')!r}, out)
print(json.dumps({{"class": type(embedder).__name__, "pooling": embedder.pooling_mode,
                   "tf_esimcse": any(m.startswith("tf_esimcse") for m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info == {"class": "BertTextEmbedder", "pooling": mode, "tf_esimcse": False}
    theirs = np.load(tmp_path / "theirs.npy")
    cosine = (theirs * ours).sum(1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ours, axis=1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)
    # ... and our own loader still reads the same directory, exactly.
    again = SentenceEncoder.from_pretrained(str(tmp_path / "saved"))
    assert again.pooler_type == pooler
    np.testing.assert_allclose(again.encode(SENTENCES, verbose=0), ours, atol=1e-6)


def test_poolers_keras_hub_lacks_write_no_text_embedder_task(model_dir, tmp_path):
    encoder = tiny_encoder(model_dir, pooler_type="avg_first_last")
    encoder.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "task.json").exists()  # TextEmbedder would mean-pool: not ours
    assert json.loads((tmp_path / "saved" / "tf_esimcse.json").read_text())["pooler_type"] == "avg_first_last"
