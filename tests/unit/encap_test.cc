// placeholder: written by the encap work in progress
#include <gtest/gtest.h>
