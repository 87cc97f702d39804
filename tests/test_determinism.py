"""Two processes, same seed, the real default AVGN: bit-identical losses (not only two runs in one
process, which shares the allocator state and thread pool warm-up)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, torch
from avgn_lib.models import build_model
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model("avgn", 6, {"dim": 128, "depth": 3, "heads": 4, "width": 16,
                                "visual_trunk": "resnet18", "trunk_trainable": "all",
                                "visual_stride": 16})
opt = torch.optim.Adam(model.parameters(), 1e-3)
g = torch.Generator().manual_seed(1)
losses = []
for _ in range(4):
    b = 64
    batch = {"image": torch.randn(b, 3, 96, 96, generator=g),
             "spec": torch.randn(b, 1, 32, 32, generator=g),
             "classes": torch.randint(0, 6, (b, 1), generator=g)}
    batch["labels"] = torch.zeros(b, 6).scatter_(1, batch["classes"], 1.0)
    loss = sum(model.loss(model(batch), batch).values())
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
print(json.dumps(losses))
'''


def _losses():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_avgn_training_is_bit_identical_across_processes():
    assert _losses() == _losses()
