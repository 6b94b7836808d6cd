"""Adapters that put gengrad's generalized gradient into other frameworks' automatic
differentiation: ``gengrad.interop.torch`` (a ``torch.autograd.Function`` and an
``nn.Module``) and ``gengrad.interop.jax`` (a ``jax.custom_vjp``). Import the one you need;
neither framework is imported here."""
