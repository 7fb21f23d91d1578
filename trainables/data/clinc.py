"""CLINC150 intents (Larson et al. 2019): 150 in-scope intents, out-of-scope queries as OOD.

Read from ``--data-dir`` (or $OVATUNE_DATA_DIR), the first of:

- ``clinc_oos/plus/``: Hugging Face ``clinc_oos``, config ``plus``, as written by
  ``datasets.load_dataset("clinc_oos", "plus").save_to_disk(...)`` (``--download`` does that);
- ``clinc150/data_full.json`` (or ``data_full.json``): the original release, lists of
  ``[text, intent]`` under ``train``/``val``/``test`` and ``oos_train``/``oos_val``/``oos_test``.

The out-of-scope intent (``oos``, looked up by name) never reaches training: the in-scope intents
become labels 0..149 (in the source's order of names), the out-of-scope test queries are the OOD set
(test: 4 500 in-scope + 1 000 out-of-scope in ``plus``), and the out-of-scope validation queries are
kept in ``extras["val_ood"]``.

Text becomes token ids (N, 32) int64 with a WordPiece vocabulary trained here on the in-scope
training sentences with the ``tokenizers`` library (lower-cased, BERT's normalisation and
pre-tokenisation, ``[CLS] … [SEP]``, padded with ``[PAD]`` = 0 and truncated to 32). The tokenizer
is deterministic given the training split, and it travels as JSON with every checkpoint and export.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainables.data import Dataset, DatasetNotAvailable, Split, data_root

MAX_LENGTH = 32
VOCAB_SIZE = 8192  # an upper bound: CLINC's training sentences hold fewer distinct word pieces
OOS = "oos"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] first: id 0
HF_FOLDER = Path("clinc_oos") / "plus"
JSON_FILES = (Path("clinc150") / "data_full.json", Path("data_full.json"))

# (texts, intent names) per split: train, validation, test
Rows = dict[str, tuple[list[str], list[str]]]


def clinc_data_dir(data_dir: str | Path | None) -> Path:
    """``data_dir``, else $OVATUNE_DATA_DIR (see ``trainables.data.data_root``)."""
    return data_root("clinc", data_dir, f"{HF_FOLDER}/ or {JSON_FILES[0]}")


def clinc_source(data_dir: str | Path | None) -> Path:
    """The first CLINC source present under ``data_dir`` (see the module doc).

    Raises:
        DatasetNotAvailable: none is; the message names the paths and how to get the data.
    """
    root = clinc_data_dir(data_dir)
    candidates = [root / HF_FOLDER] + [root / f for f in JSON_FILES]
    for path in candidates:
        if (path / "dataset_dict.json").is_file() or path.is_file():
            return path
    raise DatasetNotAvailable(
        f"clinc not found: looked for {', '.join(map(str, candidates))}. Get it with `ovatune sweep clinc "
        f"--download --data-dir {root}` (Hugging Face clinc_oos, config plus) on a machine with internet access, "
        f"or put data_full.json of https://github.com/clinc/oos-eval in {root / 'clinc150'}"
    )


def read_hf(path: Path) -> tuple[Rows, list[str]]:
    """A ``save_to_disk`` copy of clinc_oos/plus: rows per split and the intent names."""
    from datasets import load_from_disk

    splits = load_from_disk(str(path))
    names = splits["train"].features["intent"].names
    rows = {}
    for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        columns = splits[theirs].to_dict()
        rows[ours] = (columns["text"], [names[i] for i in columns["intent"]])
    return rows, names


def read_json(path: Path) -> tuple[Rows, list[str]]:
    """The original ``data_full.json``: rows per split (in- and out-of-scope together) and the intent
    names, in-scope ones in order of first appearance in the training split, then ``oos``."""
    raw = json.loads(path.read_text())
    rows = {}
    for split in ("train", "val", "test"):
        pairs = raw[split] + raw[f"oos_{split}"]
        rows[split] = ([text for text, _ in pairs], [intent for _, intent in pairs])
    names = list(dict.fromkeys(rows["train"][1]))
    return rows, names + ([OOS] if OOS not in names else [])


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """A lower-cased BERT WordPiece tokenizer trained on ``texts``, padding and truncating to 32."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.enable_truncation(MAX_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=MAX_LENGTH)
    return tokenizer


def load_tokenizer(serialized: str):
    """A tokenizer from the JSON that checkpoints and exports carry."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(serialized)


def encode(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids (N, 32) int64."""
    return torch.tensor([e.ids for e in tokenizer.encode_batch(list(texts))], dtype=torch.long).reshape(-1, MAX_LENGTH)


def load_clinc(data_dir: str | None, seed: int = 0) -> Dataset:
    """CLINC150 from ``data_dir`` (see the module doc); ``seed`` is unused (the splits are published)."""
    source = clinc_source(data_dir)
    rows, names = read_hf(source) if source.is_dir() else read_json(source)
    if OOS not in names:
        raise DatasetNotAvailable(
            f"{source} has no {OOS!r} intent: not CLINC150 (intents: {', '.join(names[:5])}, ...)"
        )
    in_scope = [n for n in names if n != OOS]
    label = {name: i for i, name in enumerate(in_scope)}

    def part(split: str, scope: bool) -> list[int]:
        return [i for i, intent in enumerate(rows[split][1]) if (intent != OOS) == scope]

    train_texts = [rows["train"][0][i] for i in part("train", True)]
    tokenizer = train_tokenizer(train_texts)

    def split(name: str) -> Split:
        index = part(name, True)
        texts, intents = rows[name]
        ids = encode(tokenizer, [texts[i] for i in index])
        return Split(ids, torch.tensor([label[intents[i]] for i in index], dtype=torch.long))

    def out_of_scope(name: str) -> torch.Tensor:
        return encode(tokenizer, [rows[name][0][i] for i in part(name, False)])

    return Dataset(
        name="clinc",
        class_names=in_scope,
        train=split("train"),
        val=split("val"),
        test=split("test"),
        ood={"out_of_scope": out_of_scope("test")},
        extras={"val_ood": out_of_scope("val")},
        preprocessing="token_ids",
        tokenizer=tokenizer.to_str(),
        model_settings={"vocab_size": tokenizer.get_vocab_size(), "max_length": MAX_LENGTH, "pad_id": 0},
    )


def download_clinc(data_dir: str | Path | None) -> Path:
    """``datasets.load_dataset("clinc_oos", "plus")`` saved to ``<data_dir>/clinc_oos/plus``."""
    from datasets import load_dataset

    target = clinc_data_dir(data_dir) / HF_FOLDER
    if not (target / "dataset_dict.json").is_file():
        try:
            load_dataset("clinc_oos", "plus").save_to_disk(str(target))
        except Exception as error:  # the hub client raises many types; all mean "not downloaded"
            raise DatasetNotAvailable(f"downloading clinc_oos/plus into {target} failed: {error}") from error
    return target
