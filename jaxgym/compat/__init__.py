"""Bridges to other tools' interfaces, layered above `jaxgym` and `render` (the core `jaxgym`
package never imports them):

    jaxgym.compat.vlmgym      the sandbox interface of the paper's trainer (VLM-Gym / EasyR1)
    jaxgym.compat.gymnasium   `gymnasium` environments: jaxgym/Swap-v0 and the others
"""
