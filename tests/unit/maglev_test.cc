// placeholder: written by the maglev work in progress
#include <gtest/gtest.h>
