"""The README's Python API example runs as written (on the bundled digits data, with
one epoch, so the test stays fast and needs no download)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    small = (code.replace('"fashion-mnist"', '"digits"')
             .replace('zoo.build("lenet300")', 'zoo.build("lenet300", in_features=64)')
             .replace('("lenet300", {})', '("lenet300", {"in_features": 64})')
             .replace("epochs=5", "epochs=1"))
    assert small.count("digits") == 1 and "in_features=64" in small
    monkeypatch.chdir(tmp_path)
    exec(compile(small, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy" in out and (tmp_path / "lenet300.cnn").stat().st_size > 0
