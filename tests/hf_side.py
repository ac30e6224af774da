"""Make tiny random checkpoints with the real `transformers`, in the side environment.

Run with the interpreter of `.venv-st` (transformers + PyTorch; nothing of TensorFlow or of this
package), as tests/test_roberta.py does; this file imports nothing from the repository.

    .venv-st/bin/python tests/hf_side.py JOB.json

JOB.json: {"models": [{"family": "roberta" | "bert", "dir": DIR, "config": {...}, "seed": int}, ...],
           "sentences": [...], "output": NPZ}. DIR already holds the tokenizer files (vocab.json +
merges.txt, or vocab.txt); for each model this script builds `RobertaModel` / `BertModel` from
`RobertaConfig` / `BertConfig(**config)` with torch's seeded random initialisation, moves every
LayerNorm off its (1, 0) start so that those weights are checked too, saves it into DIR
(`save_pretrained`: config.json + model.safetensors), tokenizes `sentences` with
`RobertaTokenizerFast` / `BertTokenizerFast` loaded from DIR, and runs the model in eval mode on
the padded batch. NPZ gets, per model i: `ids_i_<k>` (sentence k's ids, specials included),
`token_ids_i`, `padding_mask_i`, `hidden_states_i` (layers + 1, batch, length, hidden) and
`pooled_i`. Prints one JSON line with the versions.
"""
import json
import sys


def main(job_path):
    import numpy as np
    import torch
    import transformers

    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    torch.set_num_threads(2)
    classes = {
        "roberta": (transformers.RobertaConfig, transformers.RobertaModel, transformers.RobertaTokenizerFast),
        "bert": (transformers.BertConfig, transformers.BertModel, transformers.BertTokenizerFast),
    }
    arrays = {}
    for i, spec in enumerate(job["models"]):
        config_cls, model_cls, tokenizer_cls = classes[spec["family"]]
        torch.manual_seed(spec.get("seed", 0))
        model = model_cls(config_cls(**spec["config"])).eval()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "LayerNorm" in name:
                    parameter.add_(0.1 * torch.randn_like(parameter))
        model.save_pretrained(spec["dir"], safe_serialization=True)
        tokenizer = tokenizer_cls.from_pretrained(spec["dir"])
        for k, sentence in enumerate(job["sentences"]):
            arrays[f"ids_{i}_{k}"] = np.asarray(tokenizer(sentence)["input_ids"], "int64")
        batch = tokenizer(job["sentences"], padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        arrays[f"token_ids_{i}"] = batch["input_ids"].numpy()
        arrays[f"padding_mask_{i}"] = batch["attention_mask"].numpy()
        arrays[f"hidden_states_{i}"] = torch.stack(out.hidden_states).numpy()
        arrays[f"pooled_{i}"] = out.pooler_output.numpy()
    np.savez(job["output"], **arrays)
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
