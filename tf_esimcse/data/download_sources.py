"""What `tf-esimcse download-data` fetches: one `Source` per item, in `SOURCES`.

The SimCSE authors' Hugging Face data set (princeton-nlp/datasets-for-simcse); no sha256 is pinned
yet (see `tf_esimcse.data.download` for what that means and how an item is fetched and placed).
"""
from dataclasses import dataclass
from typing import Optional

_HF = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/"
_HF_CLI_HINT = (
    "`huggingface-cli download --repo-type dataset princeton-nlp/datasets-for-simcse {name} "
    "--local-dir DIR` (behind a blocked huggingface.co, with HF_ENDPOINT=https://hf-mirror.com), or a "
    "browser, then place it as DIR/{name}"
)


@dataclass(frozen=True)
class Source:
    """One downloadable item.

    Attributes:
        filename: str. Name of the downloaded file in DEST (for an archive, deleted after
            extraction).
        urls: tuple of str. Primary URL first, then alternatives/mirrors, tried in order.
        sha256: str or None. Expected sha256 (hex) of the downloaded file; None = not pinned
            (see `tf_esimcse.data.download`).
        extract_to: str or None. None: the file itself is the result (`DEST/filename`). Otherwise
            the file is an archive (.tar, .tar.gz, .tgz, .zip) extracted into `DEST/extract_to`.
        check: str. Layout check: "text" (non-empty, UTF-8, not an HTML page), "nli_csv" (header
            sent0,sent1,hard_neg) or "senteval" (STS/ and SICK/ after extraction).
        hint: str. Where else to get it, for the error message when every URL fails.
    """

    filename: str
    urls: tuple
    sha256: Optional[str] = None
    extract_to: Optional[str] = None
    check: str = "text"
    hint: str = ""


SOURCES = {
    "senteval": Source(
        filename="senteval.tar",
        urls=(_HF + "senteval.tar",),
        sha256=None,  # not pinned yet: see tf_esimcse.data.download
        extract_to="senteval",
        check="senteval",
        hint=(
            "run `bash download_dataset.sh` in SimCSE's SentEval/data/downstream/ "
            "(github.com/princeton-nlp/SimCSE) or SentEval's `data/downstream/get_transfer_data.bash` "
            "(original links, often dead), then put STS/ and SICK/ in DIR/senteval/"
        ),
    ),
    "wiki1m": Source(
        filename="wiki1m_for_simcse.txt",
        urls=(_HF + "wiki1m_for_simcse.txt",),
        sha256=None,  # not pinned yet: see tf_esimcse.data.download
        check="text",
        hint=_HF_CLI_HINT.format(name="wiki1m_for_simcse.txt"),
    ),
    "nli": Source(
        filename="nli_for_simcse.csv",
        urls=(_HF + "nli_for_simcse.csv",),
        sha256=None,  # not pinned yet: see tf_esimcse.data.download
        check="nli_csv",
        hint=_HF_CLI_HINT.format(name="nli_for_simcse.csv"),
    ),
}
