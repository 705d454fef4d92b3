// placeholder: written by the parse work in progress
