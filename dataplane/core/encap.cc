// placeholder: written by the encap work in progress
