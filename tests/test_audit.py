"""`nanguard audit`: planted faults in every format found at their rows or files, clean data
without errors, exact merging of shards, the exit codes, the HTML page and Guard(audit=True)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanguard
from nanguard.audit import tables
from nanguard.audit.stats import Moments

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
ROWS = 3000


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanguard", "audit", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


def by_code(report: nanguard.audit.AuditReport) -> dict[str, list]:
    found: dict[str, list] = {}
    for f in report.findings:
        found.setdefault(f.code, []).append(f)
    return found


def planted(rows: int = ROWS, width: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal features and labels 0..4, with one fault of each kind at a known row."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width))
    y = rng.integers(0, 5, rows).astype(np.float64)
    x[1234, 2] = np.nan  # a 0/0 in preprocessing
    x[77, 4] = np.inf
    x[2500, 1] = 3e6  # a unit mistake
    x[:, 3] = 1.0  # constant column
    y[999] = 7  # past 5 classes
    y[2222] = np.nan
    return x, y


def assert_planted(report: nanguard.audit.AuditReport, label: str | None = None) -> None:
    found = by_code(report)
    nonfinite = {f.feature: f.indices for f in found["nonfinite"]}
    names = [s.name for s in report.features]
    feature = (lambda i: names[i]) if not names[0].isdigit() else (lambda i: i)
    assert nonfinite == {feature(2): [1234], feature(4): [77]}
    assert [(f.feature, f.indices) for f in found["outlier"]] == [(feature(1), [2500])]
    assert [f.feature for f in found["constant_feature"]] == [feature(3)]
    assert [f.indices for f in found["label_out_of_range"]] == [[999]]
    assert [f.indices for f in found["label_nonfinite"]] == [[2222]]
    if label is not None:
        assert found["label_out_of_range"][0].feature == label
    assert report.exit_code == 1


# -- formats --


def test_npy_with_label_file_cli_json_and_html(tmp_path: Path) -> None:
    x, y = planted()
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    out = cli(
        "--labels",
        tmp_path / "y.npy",
        "--num-classes",
        "5",
        "--json",
        tmp_path / "a.json",
        "--report",
        tmp_path / "rep",
        tmp_path / "x.npy",
    )
    assert out.returncode == 1, out.stderr
    data = json.loads((tmp_path / "a.json").read_text())
    assert list(data) == ["schema", "rows", "findings", "features"]
    assert data["schema"] == 1 and data["rows"] == ROWS
    first = data["findings"][0]
    assert list(first) == ["code", "severity", "feature", "indices", "count", "message"]
    assert list(data["features"][0]) == ["name", "count", "nonfinite", "min", "max", "mean", "std"]
    assert data["features"][2]["nonfinite"] == 1 and data["features"][3]["std"] == 0.0
    report = nanguard.audit(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), num_classes=5)
    assert_planted(report)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<svg" in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert json.loads((tmp_path / "rep" / "report.json").read_text()) == data


def test_truncated_npy_is_a_finding_and_its_rows_are_audited(tmp_path: Path) -> None:
    x, _ = planted()
    np.save(tmp_path / "x.npy", x)
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[: len(raw) - 48 * 100])  # the last 100 rows are gone
    report = nanguard.audit(str(tmp_path / "x.npy"))
    corrupt = by_code(report)["corrupt_file"][0]
    assert corrupt.indices == [str(tmp_path / "x.npy")] and "row 2900 of 3000" in corrupt.message
    assert report.rows == 2900 and by_code(report)["outlier"][0].indices == [2500]


def test_npz_members(tmp_path: Path) -> None:
    x, y = planted()
    np.savez_compressed(tmp_path / "d.npz", x_train=x, y_train=y)
    assert_planted(nanguard.audit(str(tmp_path / "d.npz"), num_classes=5), label="y_train")


def test_csv_columns_and_bad_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    x, y = planted()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["city"] = "x"  # text: not audited
    frame["label"] = y
    frame.to_csv(tmp_path / "d.csv", index=False)
    report = nanguard.audit(str(tmp_path / "d.csv"), "label", num_classes=5)
    assert_planted(report, label="label")
    assert report.features[0].name == "f0" and len(report.features) == x.shape[1]
    assert any("city" in note for note in report.notes)

    lines = (tmp_path / "d.csv").read_text().splitlines()
    lines[2801] = "oops" + lines[2801][lines[2801].index(",") :]  # row 2800: a cell not a number
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    out = cli("--labels", "label", "--json", tmp_path / "b.json", tmp_path / "bad.csv")
    assert out.returncode == 1
    found = json.loads((tmp_path / "b.json").read_text())["findings"]
    assert [(f["feature"], f["indices"]) for f in found if f["code"] == "nonfinite"] == [
        ("f0", [2800]),
        ("f2", [1234]),
        ("f4", [77]),
    ]
    lines[2901] += ",1"  # row 2900 has a field too many: the rest of the file cannot be read
    (tmp_path / "worse.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tables, "CSV_BLOCK", 1 << 16)
    report = nanguard.audit(str(tmp_path / "worse.csv"), "label")
    corrupt = by_code(report)["corrupt_file"][0]
    assert corrupt.indices == [str(tmp_path / "worse.csv")] and "Expected" in corrupt.message
    assert 1234 in by_code(report)["nonfinite"][0].indices


def test_parquet_shards_in_processes_match_one_pass(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = planted()
    table = pa.table({**{f"f{i}": x[:, i] for i in range(x.shape[1])}, "y": y})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=500)
    path = str(tmp_path / "d.parquet")
    serial = nanguard.audit.audit_paths([path], labels="y", num_classes=5, workers=1)
    pooled = nanguard.audit.audit_paths([path], labels="y", num_classes=5, workers=3)
    assert_planted(pooled, label="y")
    assert [f.to_dict() for f in pooled.findings] == [f.to_dict() for f in serial.findings]
    for a, b in zip(pooled.features, serial.features, strict=True):
        assert a.count == b.count and a.min == b.min and a.max == b.max
        assert a.mean == pytest.approx(b.mean, rel=1e-12, abs=1e-12)
        assert a.std == pytest.approx(b.std, rel=1e-12)


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_corrupt_blank_duplicate_and_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for name in ("cat", "dog", "owl"):
        for i in range(12):
            _png(root / name / f"{i:02d}.png", rng.integers(0, 256, (16, 16, 3), np.uint8))
    _png(root / "dog" / "05.png", np.zeros((16, 16, 3), np.uint8))  # blank: row 12 + 5
    same = rng.integers(0, 256, (16, 16, 3), np.uint8)
    _png(root / "owl" / "00.png", same)
    _png(root / "owl" / "03.png", same)  # duplicate of row 24
    whole = (root / "cat" / "07.png").read_bytes()
    (root / "cat" / "07.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (root / "cat" / "08.png").write_text("not an image")
    out = cli("--num-classes", "2", "--json", tmp_path / "i.json", "--workers", "2", root)
    assert out.returncode == 1, out.stderr
    data = json.loads((tmp_path / "i.json").read_text())
    found = {f["code"]: f for f in data["findings"]}
    assert sorted(found["corrupt_file"]["indices"]) == [
        str(root / "cat" / "07.png"),
        str(root / "cat" / "08.png"),
    ]
    assert found["blank_sample"]["indices"] == [17]
    assert found["duplicate"]["indices"] == [27]
    assert found["label_out_of_range"]["indices"] == list(range(24, 36))  # "owl" is class 2
    assert data["rows"] == 36 and [f["name"] for f in data["features"]] == ["red", "green", "blue"]
    clean = nanguard.audit(str(root / "dog"))  # no subfolders: no labels
    assert clean.errors == [] and clean.rows == 12


def _tfrecord(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for row, label in zip(x, y, strict=True):
            feature = {
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
                "label": tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
            }
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )


def test_tfrecord_and_a_truncated_copy(tmp_path: Path) -> None:
    x, y = planted()
    _tfrecord(tmp_path / "d.tfrecord", x, y)
    report = nanguard.audit(str(tmp_path / "d.tfrecord"), "label", num_classes=5)
    found = by_code(report)
    assert {f.feature: f.indices for f in found["nonfinite"]} == {"x[2]": [1234], "x[4]": [77]}
    assert [f.indices for f in found["label_out_of_range"]] == [[999]]
    assert [f.indices for f in found["label_nonfinite"]] == [[2222]]
    assert [(f.feature, f.indices) for f in found["outlier"]] == [("x[1]", [2500])]
    raw = (tmp_path / "d.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(raw[: len(raw) - 30])
    cut = nanguard.audit(str(tmp_path / "cut.tfrecord"), "label")
    assert by_code(cut)["corrupt_file"][0].indices == [str(tmp_path / "cut.tfrecord")]


def test_tf_data_dataset_batched_and_unbatched() -> None:
    import tensorflow as tf

    x, y = planted()
    for ds in (
        tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
        tf.data.Dataset.from_tensor_slices((x, y)),
    ):
        report = nanguard.audit(ds, num_classes=5)
        assert report.rows == ROWS
        assert_planted(report, label="y")


def test_in_memory_arrays_and_dataframe() -> None:
    import pandas as pd

    x, y = planted()
    assert_planted(nanguard.audit(x, y, num_classes=5))
    frame = pd.DataFrame(x, columns=list("abcdef")).assign(target=y)
    report = nanguard.audit(frame, "target", num_classes=5)
    assert_planted(report, label="target")
    assert [f.feature for f in by_code(report)["outlier"]] == ["b"]


def test_several_inputs_as_a_list_are_read_per_input() -> None:
    """Keras' several inputs ``[x_a, x_b]``: two arrays of the same shape are not read as two
    rows of a 3-D array."""
    x, y = planted()
    report = nanguard.audit([x[:, :3], x[:, 3:]], y, num_classes=5)
    assert report.rows == ROWS
    nonfinite = {f.feature: f.indices for f in by_code(report)["nonfinite"]}
    assert nonfinite == {"input 0[2]": [1234], "input 1[1]": [77]}


def test_clean_data_has_no_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 8)).astype(np.float32)
    y = rng.integers(0, 4, 2000)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = cli("--labels", tmp_path / "y.npy", "--num-classes", "4", tmp_path / "x.npy")
    assert out.returncode == 0, out.stdout + out.stderr
    report = nanguard.audit(x, y, num_classes=4)
    assert report.findings == [] and report.rows == 2000


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "d.xyz").write_text("1,2\n")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    for args, needle in (
        ([tmp_path / "d.xyz"], "d.xyz: unknown format"),
        ([tmp_path / "missing.npy"], "missing.npy: no such file"),
        ([tmp_path / "broken.npy"], "broken.npy: not a readable .npy"),
        (["--labels", tmp_path / "nope.npy", tmp_path / "x.npy"], "nope.npy: no such labels"),
    ):
        out = cli(*args)
        assert out.returncode == 2 and needle in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# -- statistics --


def test_shards_merge_to_the_one_pass_mean_and_variance() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((10_000, 3)) * [1.0, 1e-3, 50.0] + [0.0, 1e6, -3.0]
    x[17, 0] = np.nan
    whole = Moments(3)
    whole.update(x)
    merged = Moments(3)
    for part in np.array_split(x, [1, 2500, 2501, 7000]):
        shard = Moments(3)
        for chunk in np.array_split(part, 3):
            if len(chunk):
                shard.update(chunk)
        merged.merge(shard)
    finite = np.where(np.isfinite(x), x, np.nan)
    for m in (whole, merged):
        assert m.count.tolist() == [9999, 10_000, 10_000] and m.nonfinite.tolist() == [1, 0, 0]
        np.testing.assert_allclose(m.mean, np.nanmean(finite, 0), rtol=1e-12)
        np.testing.assert_allclose(m.m2 / m.count, np.nanvar(finite, 0), rtol=1e-9)
        assert m.minimum.tolist() == np.nanmin(finite, 0).tolist()
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-8)


def awkward(rows: int = 4000, seed: int = 3) -> np.ndarray:
    """Columns that exercise every path of the statistics: NaN and inf, a constant, a large
    mean against a small std (the shifted sums), an outlier, and plain noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 6)) * [1.0, 1.0, 1e-3, 1.0, 1.0, 2.0] + [0, 5, 1e5, 0, 0, 1]
    x[:, 1] = 5.0
    x[100, 0], x[2000, 0], x[3999, 4] = np.nan, np.inf, -np.inf
    x[1500, 3] = 1e7
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1])
def test_chunked_moments_match_numpy(dtype: type, axis: int) -> None:
    x = awkward().astype(dtype)
    moments = Moments(6)
    for chunk in np.array_split(x, 7):  # clean chunks take the fast path, others do not
        moments.update(chunk if axis == 0 else np.ascontiguousarray(chunk.T), axis)
    finite = np.where(np.isfinite(x), x, np.nan).astype(np.float64)
    assert moments.count.tolist() == np.isfinite(x).sum(0).tolist()
    assert moments.nonfinite.tolist() == (~np.isfinite(x)).sum(0).tolist()
    assert moments.minimum.tolist() == np.nanmin(finite, 0).tolist()
    assert moments.maximum.tolist() == np.nanmax(finite, 0).tolist()
    rtol = 1e-12 if dtype == np.float64 else 1e-6  # float32: sums in float32 within a chunk
    mean = np.nanmean(finite, 0)
    assert (np.abs(moments.mean - mean) <= rtol * (np.abs(mean) + np.nanstd(finite, 0))).all()
    np.testing.assert_allclose(moments.m2 / moments.count, np.nanvar(finite, 0), rtol=rtol * 10)
    assert moments.m2[1] == 0.0  # the constant column stays exactly constant


def test_pixel_sums_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from nanguard.audit import images

    monkeypatch.setattr(images, "BLOCK_ROWS", 7)  # several blocks, and a remainder row
    pixels = np.random.default_rng(4).integers(0, 256, (256 * 30 + 11, 3), np.uint8)
    pixels[5] = [0, 255, 3]
    moments = Moments(3)
    images._byte_moments(moments, pixels)
    wide = pixels.astype(np.float64)
    assert moments.count.tolist() == [len(pixels)] * 3
    assert moments.minimum.tolist() == wide.min(0).tolist()
    assert moments.maximum.tolist() == wide.max(0).tolist()
    np.testing.assert_allclose(moments.mean, wide.mean(0), rtol=1e-15)
    np.testing.assert_allclose(moments.m2, ((wide - wide.mean(0)) ** 2).sum(0), rtol=1e-12)


def test_column_chunks_give_the_row_chunks_partial() -> None:
    from nanguard.audit.partial import Partial, Settings

    x = awkward()
    x[3000] = x[10]  # a duplicate row
    rows, columns = Partial(Settings()), Partial(Settings())
    for start in range(0, len(x), 900):
        chunk = x[start : start + 900]
        rows.add(chunk, None, start)
        columns.add(np.ascontiguousarray(chunk.T), None, start, axis=1)
    for p in (rows, columns):
        p.finish()
    assert columns.nonfinite.rows().tolist() == rows.nonfinite.rows().tolist() == [100, 2000, 3999]
    assert np.concatenate(columns.cells).tolist() == np.concatenate(rows.cells).tolist()
    assert np.concatenate(columns.keys).tolist() == np.concatenate(rows.keys).tolist()
    assert np.concatenate(columns.key_rows).tolist() == np.concatenate(rows.key_rows).tolist()
    assert rows.sample is not None and columns.sample is not None
    np.testing.assert_array_equal(columns.sample.sample(), rows.sample.sample())
    assert rows.moments is not None and columns.moments is not None
    np.testing.assert_allclose(columns.moments.mean, rows.moments.mean, rtol=1e-12)


def test_keys_equal_exactly_for_equal_rows() -> None:
    from nanguard.audit.partial import exact_keys

    x = np.random.default_rng(6).standard_normal((50, 8)).astype(np.float32)
    x[20] = x[3]
    x[30] = x[3]
    x[30, 5] = np.nextafter(x[3, 5], np.float32(np.inf))  # one bit apart: not equal
    x[40] = x[3][[1, 0, 2, 3, 4, 5, 6, 7]]  # the pair of a 64-bit word swapped
    keys = exact_keys(x)
    assert keys[20] == keys[3] and len(set(keys.tolist())) == 49
    assert exact_keys(x[:, :7]).tolist() != exact_keys(x[:, 1:]).tolist()  # odd width
    wide = x.astype(np.float64)
    assert exact_keys(wide).tolist() == exact_keys(np.ascontiguousarray(wide.T), 1).tolist()


def test_planned_sample_is_the_streamed_sample() -> None:
    from nanguard.audit.stats import Reservoir

    x = np.random.default_rng(7).standard_normal((20_000, 3))
    streamed, planned = Reservoir(3, 300), Reservoir(3, 300)
    planned.plan(500, 500 + len(x))
    for start in range(0, len(x), 1300):
        streamed.update(x[start : start + 1300], 500 + start)
        planned.update(x[start : start + 1300], 500 + start)
    np.testing.assert_array_equal(planned.sample(), streamed.sample())
    assert sorted(planned.rows.tolist()) == sorted(streamed.rows.tolist())


def test_robust_statistics_match_numpy() -> None:
    from nanguard.audit.checks import _median

    rng = np.random.default_rng(8)
    for n in (1, 2, 1275, 1276):
        values = rng.standard_normal((5, n))
        assert _median(values.copy()).tolist() == np.median(values, axis=1).tolist()


def test_csv_pieces_parse_as_one_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    x, y = planted(rows=20_000)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["label"] = y
    frame.to_csv(tmp_path / "d.csv", index=False)
    whole = nanguard.audit(str(tmp_path / "d.csv"), "label", num_classes=5)
    monkeypatch.setattr(tables, "CSV_BLOCK", 1 << 15)  # about 50 pieces, on several threads
    pieces = nanguard.audit(str(tmp_path / "d.csv"), "label", num_classes=5)
    assert pieces.rows == whole.rows == 20_000
    assert [f.to_dict() for f in pieces.findings] == [f.to_dict() for f in whole.findings]
    for a, b in zip(pieces.features, whole.features, strict=True):
        assert (a.count, a.nonfinite, a.min, a.max) == (b.count, b.nonfinite, b.min, b.max)
        assert a.mean == pytest.approx(b.mean, rel=1e-12, abs=1e-15)


def test_html_escapes_names_from_the_data(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"<script>alert(1)</script>": [1.0, np.nan, 2.0], "b": [1.0, 2.0, 3.0]})
    report = nanguard.audit(frame)
    html = (report.save_html(tmp_path / "a.html")).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


# -- Guard(audit=True) --


def test_guard_audit_warns_at_train_begin() -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 4)).astype("float32") * 500.0  # unscaled
    y = rng.integers(0, 3, 256)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    guard = nanguard.Guard(audit=True, verbose=False)
    model.fit(x / 500.0, y, batch_size=32, epochs=1, verbose=0, callbacks=[guard])
    assert guard.report.runs[0].warnings == [] and guard.report.runs[0].status == "completed"
    y[40] = 3  # the model has 3 output units
    guard = nanguard.Guard(audit=True, verbose=False)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[guard])
    warnings = {w.code: w for w in guard.report.runs[0].warnings}
    assert set(warnings) == {"unscaled_input", "label_out_of_range"}
    assert warnings["label_out_of_range"].severity == "critical"
    assert "rows 40" in warnings["label_out_of_range"].message


def test_guard_audit_reads_several_inputs_and_outputs() -> None:
    """``fit([x_a, x_b], {"a": y_a, "b": y_b})``: each input and each output's targets."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x_a, x_b = rng.standard_normal((2, 256, 4)).astype("float32")
    y_a, y_b = x_a[:, :1], x_b[:, :1].copy()
    x_b[100, 2] = np.nan  # past the first batch, which the guard's preflight reads
    y_b[109, 0] = np.inf
    a, b = keras.Input((4,)), keras.Input((4,))
    hidden = keras.layers.Dense(8)(keras.layers.Concatenate()([a, b]))
    outputs = {name: keras.layers.Dense(1, name=name)(hidden) for name in ("a", "b")}
    model = keras.Model([a, b], outputs)
    model.compile("adam", {"a": "mse", "b": "mse"})
    guard = nanguard.Guard(audit=True, verbose=False)
    model.fit([x_a, x_b], {"a": y_a, "b": y_b}, batch_size=32, verbose=0, callbacks=[guard])
    audited = {
        w.code: w.message
        for w in guard.report.runs[0].warnings
        if w.message.startswith("audit of the first 256 rows")
    }
    assert "in feature input 1[2]: rows 100;" in audited["input_nonfinite"]
    assert audited["target_nonfinite"].startswith(
        "audit of the first 256 rows (targets of output 'b'):"
    )
    assert "rows 109;" in audited["target_nonfinite"]


def test_dask_cluster_gives_the_local_result(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from distributed import LocalCluster

    x, y = planted()
    table = pa.table({**{f"f{i}": x[:, i] for i in range(x.shape[1])}, "y": y})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=400)
    path = str(tmp_path / "d.parquet")
    local = nanguard.audit.audit_paths([path], labels="y", num_classes=5, workers=1)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = nanguard.audit.audit_paths(
            [path], labels="y", num_classes=5, engine="dask", scheduler=cluster.scheduler_address
        )
    assert_planted(remote, label="y")
    assert remote.to_dict()["findings"] == local.to_dict()["findings"]
    assert [f.count for f in remote.features] == [f.count for f in local.features]
