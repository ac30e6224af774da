"""tf_esimcse: contrastive sentence embeddings (SimCSE, ESimCSE, DiffCSE) in Keras 3 / TensorFlow."""
from setuptools import find_packages, setup

# Pinned to a set that installs cleanly together; constraints.txt pins the whole tree.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "keras==3.15.1",
    "keras-hub==0.32.0",
    "tensorflow-datasets==4.9.10",
    # TFDS 4.9.10 imports it on Python >= 3.9 without declaring it (tensorflow/datasets#11212).
    "importlib_resources==7.1.0",
    "tensorboard==2.21.0",
    "scipy==1.17.1",
    "numpy==2.4.6",
    "safetensors==0.8.0",
    "tqdm==4.70.1",
]

setup(
    name="tf_esimcse",
    version="0.1.0",
    description="Contrastive sentence embeddings (SimCSE, ESimCSE, DiffCSE) for Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_esimcse", "tf_esimcse.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # pytest-xdist: `make test` runs the suite in one worker per CPU (-n logical).
        "test": ["pytest==9.0.3", "pytest-xdist==3.8.0", "matplotlib==3.11.2", "faiss-cpu==1.15.1", "tf2onnx==1.17.0",
                 "onnx==1.23.2", "onnxruntime==1.32.0", "ai-edge-litert==2.3.0"],
        # tf-esimcse export --format onnx (tf2onnx converts; onnxruntime, CPU build, runs it).
        "onnx": ["tf2onnx==1.17.0", "onnx==1.23.2", "onnxruntime==1.32.0"],
        # The LiteRT interpreter without TensorFlow (the export itself needs only TensorFlow).
        "litert": ["ai-edge-litert==2.3.0"],
        # The approximate search index (tf-esimcse build-index --approximate).
        "search": ["faiss-cpu==1.15.1"],
        # Ablation tables' bar charts and trajectories (recipes/ablations.py); skipped without it.
        "plots": ["matplotlib==3.11.2"],
        "serving": ["tensorflow-serving-api==2.21.0"],
        # benchmarks/compare.py only (never a dependency; the tests run sentence-transformers in .venv-st,
        # make setup-st): install with -c constraints-st.txt, which pins torch to the CPU build.
        "bench": ["sentence-transformers==6.2.0", "torch==2.13.0"],
    },
    entry_points={"console_scripts": ["tf-esimcse=tf_esimcse.cli:main"]},
    license="Apache-2.0",
)
