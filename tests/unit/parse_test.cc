// placeholder: written by the parse work in progress
#include <gtest/gtest.h>
