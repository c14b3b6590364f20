"""Cross-checks of refbinn against an independent PyTorch implementation (``python -m validate``).

Modules: ``torch_ref`` (the torch implementation, written from the spec),
``layers`` (layers and losses, forward and VJP), ``trajectories`` (50-step
optimizer runs), ``interop`` (state_dict conversion into real torch modules),
``paper`` (refbinn's results next to the paper's tables). Needs torch (the
``validate`` extra); refbinn itself never imports this package.
"""
