// placeholder: written by the flow_table work in progress
