// Parse: everything is inline in parse.h (it runs per packet); this file checks that the header
// stands alone.
#include "dataplane/core/parse.h"
