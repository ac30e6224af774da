"""Run an exported folder with the real sentence-transformers, in the side environment.

`make setup-st` builds `.venv-st` (sentence-transformers 6.2.0 on the CPU build of PyTorch 2.13.0,
nothing of TensorFlow or of this package); tests/test_st_export.py runs this script with that
interpreter, so neither PyTorch nor scikit-learn enter `.venv` (Keras imports scikit-learn at
start-up wherever it is installed). This file imports nothing from the repository.

    .venv-st/bin/python tests/st_side.py JOB.json

JOB.json: {"model": DIR, "output": NPZ, "sentences": [...] (optional),
           "sts": {"sentences1": [...], "sentences2": [...], "scores": [...]} (optional)},
or a list of such jobs, run in turn in the one interpreter (one JSON line each).
Writes NPZ (`embeddings`, `similarity` = model.similarity(embeddings[:4], embeddings),
`pairwise` = model.similarity_pairwise(embeddings[:4], embeddings[4:8]), and `ids_<k>`: sentence k's
token ids as `model.tokenize` gives them to `encode`, specials included, truncated) and prints one
JSON line: the versions, whether torch is a CUDA build, `max_seq_length`, `similarity_fn_name`,
`truncate_dim`, the modules, the tokenizer's and the transformers model's classes (and whether the
tokenizer is a fast one), and the STS evaluator's Spearman of cosines (x100) when "sts" was given.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is read from the export folder
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(job_path):
    import torch

    with open(job_path, encoding="utf-8") as f:
        jobs = json.load(f)
    torch.set_num_threads(2)
    for job in jobs if isinstance(jobs, list) else [jobs]:
        run_job(job)


def run_job(job):
    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    model = sentence_transformers.SentenceTransformer(job["model"], device="cpu")
    info = {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
            "cuda_build": torch.version.cuda is not None, "max_seq_length": model.max_seq_length,
            "similarity_fn_name": model.similarity_fn_name, "truncate_dim": model.truncate_dim,
            "modules": [type(m).__name__ for m in model], "tokenizer": type(model.tokenizer).__name__,
            "tokenizer_is_fast": bool(getattr(model.tokenizer, "is_fast", False)),
            "auto_model": type(model[0].auto_model).__name__}
    arrays = {}
    if job.get("sentences"):
        embeddings = model.encode(job["sentences"], convert_to_numpy=True)
        arrays["embeddings"] = embeddings
        arrays["similarity"] = model.similarity(embeddings[:4], embeddings).numpy()
        arrays["pairwise"] = model.similarity_pairwise(embeddings[:4], embeddings[4:8]).numpy()
        for k, sentence in enumerate(job["sentences"]):
            features = model.tokenize([sentence])
            mask = features["attention_mask"][0].numpy().astype(bool)
            arrays[f"ids_{k}"] = features["input_ids"][0].numpy()[mask]
    if job.get("sts"):
        sts = job["sts"]
        evaluator = EmbeddingSimilarityEvaluator(sts["sentences1"], sts["sentences2"], sts["scores"],
                                                 main_similarity="cosine", name="sts", write_csv=False)
        info["sts_spearman"] = 100 * float(evaluator(model)["sts_spearman_cosine"])
    np.savez(job["output"], **arrays)
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
