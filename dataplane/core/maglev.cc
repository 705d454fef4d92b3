// placeholder: written by the maglev work in progress
