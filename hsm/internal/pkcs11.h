#pragma once
// The one include of the PKCS#11 header (p11-kit's copy, standard CK_* names). Only hsm/*.cc and
// hsm/internal/ may include it; hsm/hsm.h stays free of PKCS#11 types.

#include <p11-kit/pkcs11.h>
