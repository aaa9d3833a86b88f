"""scripts/summary_figure.py on small fake stage-3 folders: one row per class, the right pictures in each column."""

import sys

import pytest
from PIL import Image
from test_collect_metrics import write_metrics

COLOURS = {"gt": (255, 0, 0), "sample0": (0, 255, 0), "shuffled_sample0": (0, 0, 255)}
TRIALS = [(5, 0), (3, 0), (4, 1), (6, 1)]  # (index, class): class 0's first trial is 3, class 1's is 4


@pytest.fixture
def figure(repo, script):
    sys.path.insert(0, str(repo / "scripts"))
    yield script("summary_figure")
    sys.path.remove(str(repo / "scripts"))


def fake_eval(folder, shade: int, controls: bool = True):
    write_metrics(folder, 0.4, 10, 0.8, 1.0)
    (folder / "samples").mkdir()
    lines = ["index,image_name,label,subject"]
    for index, label in TRIALS:
        lines.append(f"{index},n0000000{label}_{index},{label},1")
        for kind, colour in COLOURS.items():
            if kind == "shuffled_sample0" and not controls:
                continue
            # the blue channel carries the trial index and the run's shade, so each tile is recognisable
            Image.new("RGB", (16, 16), (colour[0], colour[1], max(colour[2], index * 10 + shade))).save(
                folder / "samples" / f"trial{index:05d}_n0000000{label}_{index}_{kind}.png")
    (folder / "trials.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_one_row_per_class_with_ground_truth_models_and_shuffled_control_then_the_table(figure, tmp_path):
    full, no_clip = fake_eval(tmp_path / "eval", shade=0), fake_eval(tmp_path / "eval_no_clip", shade=1)
    out = tmp_path / "demo" / "summary.png"
    assert figure.main([f"full={full}", f"no_clip={no_clip}", "--columns", "full,no_clip", "--out", str(out), "--tile", "32"]) == 0
    picture = Image.open(out).convert("RGB")
    assert figure.trials_by_class(full) == [(0, 3), (1, 4)]
    text, pad, tile = 14, figure.PAD, 32
    label_w, head_h = 9 * text, 3 * text + pad

    def centre(row, column):
        return picture.getpixel((label_w + column * (tile + pad) + tile // 2, head_h + row * (tile + pad) + tile // 2))

    for row, index in enumerate([3, 4]):
        assert centre(row, 0) == (255, 0, index * 10)  # ground truth of the reference run
        assert centre(row, 1) == (0, 255, index * 10)  # full's sample 0
        assert centre(row, 2) == (0, 255, index * 10 + 1)  # no_clip's sample 0
        assert centre(row, 3) == (0, 0, 255)  # the shuffled-EEG control of the reference run
    grid_h = head_h + 2 * (tile + pad)
    assert picture.height > grid_h + 5 * 20  # the table (header, 2 runs, 2 controls) under the pictures


def test_missing_pictures_and_unknown_columns_are_clear_errors(figure, tmp_path, capsys):
    full, bare = fake_eval(tmp_path / "eval", 0), fake_eval(tmp_path / "bare", 0, controls=False)
    assert figure.main([f"full={bare}", "--out", str(tmp_path / "x.png")]) == 1
    assert "shuffled_sample0.png does not exist: was stage 3 run with controls" in capsys.readouterr().err
    assert figure.main([f"full={full}", "--columns", "full,nope", "--out", str(tmp_path / "x.png")]) == 1
    assert "--columns nope: not among the runs (full)" in capsys.readouterr().err
    (full / "trials.csv").unlink()
    assert figure.main([f"full={full}", "--out", str(tmp_path / "x.png")]) == 1
    assert "trials.csv does not exist: run stage 3" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
