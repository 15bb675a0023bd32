# %% [markdown]
# # convlens from Python — a quick tour on the demo zoo
#
# Run it top to bottom as a script (`python examples/python_quickstart.py`) or cell by cell
# (`# %%` cells: VS Code, Jupyter with jupytext). It uses `examples/demo-zoo` (four CIFAR-10
# ResNet-20s, normal vs PGD-trained, in four formats) and writes to `quickstart-out/`.

# %%
import os
from pathlib import Path

import convlens

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path("examples")
ZOO = HERE / "demo-zoo"
OUT = Path(os.environ.get("CONVLENS_QUICKSTART_OUT", "quickstart-out"))
OUT.mkdir(exist_ok=True)

# %% [markdown]
# ## One checkpoint: its conv layers and their filter quality
# Any format convlens reads: ONNX, PyTorch (zip, legacy, Lightning), safetensors, NumPy.

# %%
layers = convlens.inspect(ZOO / "resnet20_robust_s1.onnx")
print(layers[["layer", "shape", "kh", "kw", "conv_depth", "conv_depth_norm"]].head())

q = convlens.quality(ZOO / "resnet20_robust_s0.legacy.pt")
print(q.groups[["depth_group", "filters", "sparsity", "variance_entropy", "orthogonality"]])

# %% [markdown]
# ## A live PyTorch model (optional: needs torch)
# A `torch.nn.Module`, its `state_dict()` or a dict of numpy arrays give the same numbers as the
# saved file; the weights are read in place. `Monitor` measures them every epoch.

# %%
try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1),
    )
    mon = convlens.Monitor(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(3):
        loss = model(torch.randn(8, 3, 16, 16)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        mon.step(epoch=epoch, loss=loss.item())
    print(mon.groups[["epoch", "depth_group", "variance_entropy", "orthogonality"]])

# %% [markdown]
# ## A model zoo: filter database, basis, distribution shift, aggregates

# %%
db = convlens.Database.build(ZOO, OUT / "zoo.db", meta=ZOO / "meta.csv", progress=False)
print(db)
print(db.status()[["model", "outcome", "detail"]])

basis = db.basis(by="Robust")
print(basis[["basis", "component", "explained_variance_ratio"]].head(9))

shift = db.shift(by="Robust", pairs=ZOO / "pairings.csv")
print(shift.cells[["cell", "kl", "within_group_mean", "replicates_mean", "status"]])

agg = db.aggregate(by="Robust")
print(agg.groupby(["Robust", "depth_group"])["variance_entropy"].mean().unstack(0).head())

kl = db.kl_matrix(by="model").pivot(index="a", columns="b", values="kl")
print(kl.round(4))

# the filters themselves: a memory-mapped N×3×3 float32 array
f = db.filters("resnet20_robust_s0")
print(f.shape, f.dtype)

# %% [markdown]
# ## Figures (shown inline in a notebook; saved as SVG, PNG or PDF)

# %%
fig = convlens.filters(ZOO / "resnet20_normal_s1.safetensors", layer="first")
fig.save(OUT / "first_layer.svg")
fig.save(OUT / "first_layer.png")
rep = db.report(OUT / "report", figures=["basis", "variance", "depth", "boxes"])
for fig in rep.figures:
    print(fig.id, "—", fig.title)
rep.figures[0].save(OUT / "basis.pdf")
print("report:", rep.index)
fig  # in a notebook, this line shows the figure

# %% [markdown]
# ## The stem: do the first-layer filters and their ReLU remove adversarial perturbations?

# %%
st = convlens.stem(ZOO / "resnet20_robust_s0.legacy.pt", ZOO / "adv_examples.npz", key="resnet20_robust_s0")
print(st.models[["model", "centre_share", "pre_change", "post_change", "relu_removed"]])
